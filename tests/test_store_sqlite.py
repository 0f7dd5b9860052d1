"""store/sqlite.py: the schema version, the append-only audit table, and files it must refuse to open."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel.errors import StoreError
from sentinel.store import SqliteStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_store_schema_and_append_only_audit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    assert store.schema_version("core") >= 1
    store.add_events([("f1", T0, "alice", None, "open", "x")])
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.connection.execute("DELETE FROM finding_events")
    store.connection.execute("UPDATE schema_versions SET version = 99 WHERE component = 'core'")
    store.close()
    with pytest.raises(StoreError, match="newer than this Sentinel"):
        SqliteStore(tmp_path / "s.db")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        SqliteStore(tmp_path / "junk.db")
