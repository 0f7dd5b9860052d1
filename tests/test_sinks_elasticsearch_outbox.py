"""The outbox hook: queued atomically with the store's writes, coalesced per finding, bounded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sentinel.app import open_store as open_full_store
from sentinel.config.settings import Settings
from sentinel.models import FindingStatus
from sentinel.sinks.elasticsearch.outbox import install_outbox, outbox_stats
from sentinel.sinks.elasticsearch.schema import OUTBOX, ensure_schema
from sentinel.store import SqliteStore
from tests.support.es_scenarios import es_settings, open_store
from tests.support.findings import make_finding, make_observation

URL = "http://127.0.0.1:9"


def rows(store: SqliteStore) -> list[tuple[str, str]]:
    return [tuple(r) for r in store.connection.execute("SELECT stream, doc_id FROM es_outbox ORDER BY seq")]


def test_findings_and_observations_are_queued_with_the_write(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db", es_settings(URL))
    store.save_findings([make_finding(1)])
    store.save_observations([make_observation(1), make_observation(2)])
    assert [r[0] for r in rows(store)] == ["latest", "history", "observations", "observations"]
    assert rows(store)[0][1] == f"default:internal:{make_finding(1).id}"  # site:vantage:finding
    assert all(len(doc_id) == 64 for _s, doc_id in rows(store)[1:])  # content-hash ids


def test_a_rolled_back_write_queues_nothing(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db", es_settings(URL))
    with pytest.raises(RuntimeError), store.transaction():
        store.save_findings([make_finding(1)])
        raise RuntimeError("sweep failed after the findings were written")
    assert rows(store) == []
    assert store.get_finding(make_finding(1).id) is None


def test_newer_state_replaces_an_unshipped_older_one(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db", es_settings(URL))
    store.save_findings([make_finding(1)])
    store.save_findings([make_finding(1, FindingStatus.ACKNOWLEDGED)])
    latest = store.connection.execute("SELECT seq, body FROM es_outbox WHERE stream = 'latest'").fetchall()
    assert len(latest) == 1
    assert '"status":"acknowledged"' in latest[0][1]
    assert [r[0] for r in rows(store)].count("history") == 2  # both states stay in the history


def test_full_queue_drops_history_and_observations_never_finding_state(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(tmp_path / "s.db", es_settings(URL, outbox_max_items=100))
    store.save_findings([make_finding(i) for i in range(40)])  # 80 rows
    with caplog.at_level(logging.WARNING):
        store.save_observations([make_observation(i) for i in range(30)])
        store.save_findings([make_finding(i) for i in range(40, 70)])
    streams = [r[0] for r in rows(store)]
    assert streams.count("latest") == 70
    assert streams.count("observations") == 0
    assert streams.count("history") == 40
    assert outbox_stats(store).dropped_total == 60
    assert "elasticsearch outbox full" in caplog.text
    assert "outbox_max_items=100" in caplog.text


def test_low_disk_drops_history_and_observations(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(tmp_path / "s.db", es_settings(URL, outbox_min_free_bytes=10**18))
    with caplog.at_level(logging.WARNING):
        store.save_findings([make_finding(1)])
    assert [r[0] for r in rows(store)] == ["latest"]
    assert "outbox_min_free_bytes" in caplog.text


def test_stats_report_depth_and_age(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db", es_settings(URL))
    empty = outbox_stats(store)
    assert (empty.depth, empty.oldest_age_seconds, empty.shipped_total) == (0, 0.0, 0)
    store.save_findings([make_finding(1)])
    oldest = store.connection.execute("SELECT MIN(enqueued_at) FROM es_outbox").fetchone()[0]
    stats = outbox_stats(store, now=oldest + 42)
    assert (stats.depth, stats.oldest_age_seconds) == (2, 42)


def test_not_configured_means_no_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTINEL_ELASTICSEARCH_URL", raising=False)
    store = open_full_store(tmp_path / "s.db")  # every component's tables, as Sentinel opens it
    assert install_outbox(store, Settings(store=tmp_path / "s.db")) is None
    store.save_findings([make_finding(1)])
    assert store.connection.execute("SELECT COUNT(*) FROM es_outbox").fetchone()[0] == 0  # nothing queued
    assert outbox_stats(store).depth == 0


def test_schema_is_applied_once(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db", es_settings(URL))
    ensure_schema(store)
    assert store.schema_version("es_outbox") == len(OUTBOX)
