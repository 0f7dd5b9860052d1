"""A damaged store, or a file that is no database, is refused with a message naming it and saying what to do
(exit 2, no traceback), and nothing is written to it: not by a reading command, not by a scan."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel.app import open_store
from sentinel.errors import CorruptStoreError
from sentinel.models import Finding, FindingStatus, Severity
from sentinel.models.finding import fingerprint
from sentinel.store import SqliteStore


def _sentinel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from sentinel.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, check=False, capture_output=True, text=True, timeout=60
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _damaged_store(path: Path) -> None:
    """A store with 300 findings whose `findings` b-tree root page has its cells smashed; page 1 (the schema) is
    intact, so the file opens and only reading the findings meets the damage."""
    store = open_store(path)
    now = datetime.now(UTC)
    store.save_findings(
        Finding(
            id=fingerprint("r", "sys", f"t{i}"),
            rule_id="r",
            title="a title " * 10,
            severity=Severity.HIGH,
            category="c",
            system_id="sys",
            target=f"t{i}",
            status=FindingStatus.OPEN,
            occurrences=1,
            first_seen=now,
            last_seen=now,
        )
        for i in range(300)
    )
    store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'findings'").fetchone()
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size
    data[start + 12 : start + page_size] = b"\xa5" * (page_size - 12)  # keep the page header, smash the cells
    path.write_bytes(bytes(data))
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


@pytest.fixture
def loopback_scan(tmp_path: Path) -> Path:
    """Settings for a scan of one closed loopback port with one probe: fast, and it would write observations."""
    (tmp_path / "registry.yaml").write_text(
        "scope: {allow: [127.0.0.1/32]}\n"
        "systems:\n"
        "  - id: lo\n    name: loopback\n    owner: {department: ops}\n    tier: city\n    mlps_level: 2\n"
        "    endpoints: [{host: 127.0.0.1, ports: [9]}]\n",
        encoding="utf-8",
    )
    config = tmp_path / "sentinel.yaml"
    config.write_text(
        f"registry: {tmp_path / 'registry.yaml'}\ncollectors: {{probes: [tcp_ports], scan_method: connect}}\n",
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize("command", [["findings", "list"], ["scan"]])
def test_a_damaged_store_is_refused_naming_it_and_left_untouched(
    tmp_path: Path, loopback_scan: Path, command: list[str]
) -> None:
    store = tmp_path / "damaged.db"
    _damaged_store(store)
    before = _digest(store)
    done = _sentinel(*command, "--config", str(loopback_scan), "--store", str(store), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"{store}: the store is damaged" in done.stderr
    assert f"sqlite3 {store} 'PRAGMA integrity_check'" in done.stderr and "backup" in done.stderr
    assert _digest(store) == before
    assert not store.with_name(store.name + "-wal").exists()


@pytest.mark.parametrize("command", [["findings", "list"], ["scan"]])
def test_a_file_that_is_no_database_is_refused_and_left_untouched(
    tmp_path: Path, loopback_scan: Path, command: list[str]
) -> None:
    store = tmp_path / "notes.txt"
    store.write_text("these are my notes, not a database\n" * 200, encoding="utf-8")
    before = _digest(store)
    done = _sentinel(*command, "--config", str(loopback_scan), "--store", str(store), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"{store}: not an SQLite database" in done.stderr and "--store" in done.stderr
    assert _digest(store) == before


def test_damage_first_met_inside_a_write_is_a_store_error_and_rolled_back(tmp_path: Path) -> None:
    """An index that disagrees with its table passes quick_check; the write that meets it is refused whole."""
    path = tmp_path / "s.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT)")
    db.execute("CREATE INDEX t_a ON t (a)")
    db.executemany("INSERT INTO t (a) VALUES (?)", [(f"v{i}",) for i in range(50)])
    db.execute("PRAGMA writable_schema=ON")
    db.execute("UPDATE sqlite_master SET sql = 'CREATE INDEX t_a ON t (id)' WHERE name = 't_a'")  # now it lies
    db.close()
    store = SqliteStore(path)
    try:
        damaged = pytest.raises(CorruptStoreError, match=r"s\.db: the store is damaged .*PRAGMA integrity_check")
        with damaged, store.transaction() as conn:
            conn.execute("INSERT INTO t (a) VALUES ('kept?')")
            conn.execute("DELETE FROM t WHERE id = 5")
        assert not store.connection.in_transaction
        assert store.connection.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 50
    finally:
        store.close()


def test_damage_met_on_a_later_read_is_a_message_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Damage quick_check cannot see (an index whose entries disagree with its table) surfaces on some later read,
    outside any write: the command still ends with the advice and exit 2."""
    from sentinel.cli.main import main

    store = tmp_path / "s.db"
    open_store(store).close()

    def malformed(*_: object, **__: object) -> list[Finding]:
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(SqliteStore, "list_findings", malformed)
    assert main(["findings", "list", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "database disk image is malformed" in err and "PRAGMA integrity_check" in err and "Traceback" not in err
