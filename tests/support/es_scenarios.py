"""Shipping scenarios that hold for any cluster: test_sinks_elasticsearch_scenarios.py runs them against the double, and
test_sinks_elasticsearch_real_cluster.py against a real Elasticsearch when SENTINEL_TEST_ES_URL is set."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from elasticsearch import Elasticsearch

from sentinel.config.settings import Settings
from sentinel.models import FindingStatus
from sentinel.sinks.elasticsearch.documents import latest_id
from sentinel.sinks.elasticsearch.outbox import install_outbox, outbox_stats
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.sinks.elasticsearch.setup import Installer
from sentinel.sinks.elasticsearch.shipper import Shipper
from sentinel.sinks.elasticsearch.templates import IndexNames
from sentinel.store import SqliteStore
from tests.support.findings import T0, make_finding, make_observation


def es_settings(url: str, prefix: str = "sentinel", **extra: object) -> ElasticsearchSettings:
    return ElasticsearchSettings.model_validate(
        {
            "url": url,
            "index_prefix": prefix,
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
            "outbox_min_free_bytes": 0,  # the floor has its own test; counts here must not depend on the disk
            **extra,
        }
    )


def open_store(path: Path, es: ElasticsearchSettings) -> SqliteStore:
    store = SqliteStore(path)
    install_outbox(store, Settings(store=path, sinks={"elasticsearch": es.model_dump(mode="json")}))
    return store


def count(client: Elasticsearch, index: str) -> int:
    client.indices.refresh(index=index)
    return int(client.count(index=index)["count"])


# -- scenarios (cluster-agnostic) -------------------------------------------------------------
def scenario_setup_idempotent(client: Elasticsearch, es: ElasticsearchSettings) -> None:
    first = Installer(client, es).install()
    assert {s.action for s in first} == {"created"}
    assert [s.kind for s in first].count("data_stream") == 2
    second = Installer(client, es).install()
    assert [s.action for s in second] == ["unchanged"] * len(first)


def scenario_exactly_once_after_resend(client: Elasticsearch, es: ElasticsearchSettings, tmp: Path) -> None:
    """A crash after Elasticsearch stored a batch but before the outbox forgot it: the resend is a no-op."""
    Installer(client, es).install()
    names = IndexNames(es.index_prefix)
    store = open_store(tmp / "a.db", es)
    store.save_findings([make_finding(i) for i in range(50)])
    store.save_observations([make_observation(i) for i in range(20)])
    saved = store.connection.execute("SELECT * FROM es_outbox").fetchall()
    report = Shipper(store, client, es).drain(timeout=10)
    assert (report.shipped, report.remaining) == (120, 0)
    # Put the already-shipped rows back, as if the process died before deleting them.
    store.connection.executemany(f"INSERT INTO es_outbox VALUES ({','.join('?' * 8)})", [tuple(r) for r in saved])
    again = Shipper(store, client, es).drain(timeout=10)
    assert (again.shipped, again.deduplicated, again.remaining) == (0, 120, 0)
    assert count(client, names.latest) == 50
    assert count(client, names.history) == 50
    assert count(client, names.observations) == 20
    stats = outbox_stats(store)
    assert (stats.depth, stats.shipped_total, stats.deduplicated_total) == (0, 120, 120)


def scenario_latest_state_wins(client: Elasticsearch, es: ElasticsearchSettings, tmp: Path) -> None:
    Installer(client, es).install()
    names = IndexNames(es.index_prefix)
    store = open_store(tmp / "b.db", es)
    store.save_findings([make_finding(1)])
    stale = store.connection.execute("SELECT * FROM es_outbox WHERE stream = 'latest'").fetchall()
    Shipper(store, client, es).drain(timeout=10)
    resolved = make_finding(1, FindingStatus.RESOLVED, T0 + timedelta(hours=1))
    resolved.resolved_at = T0 + timedelta(hours=1)
    store.save_findings([resolved])
    Shipper(store, client, es).drain(timeout=10)
    # A late resend of the older state must not overwrite the newer one.
    store.connection.executemany(f"INSERT INTO es_outbox VALUES ({','.join('?' * 8)})", [tuple(r) for r in stale])
    late = Shipper(store, client, es).drain(timeout=10)
    assert late.deduplicated == 1
    doc = client.get(index=names.latest, id=latest_id(resolved))["_source"]
    assert doc["sentinel"]["finding"]["status"] == "resolved"
    assert doc["event"]["end"] == resolved.resolved_at.isoformat()
    assert count(client, names.latest) == 1


def scenario_rejected_document_dead_letters(client: Elasticsearch, es: ElasticsearchSettings, tmp: Path) -> None:
    """A document the cluster refuses (400) goes to the dead-letter table with the reason; the rest ship."""
    Installer(client, es).install()
    store = open_store(tmp / "c.db", es)
    store.save_findings([make_finding(i) for i in range(3)])
    store.connection.execute(
        "INSERT INTO es_outbox (stream, doc_id, body, enqueued_at) VALUES ('history', 'broken', '{\"a\":1}', 0)"
    )
    report = Shipper(store, client, es).drain(timeout=10)
    assert (report.shipped, report.dead_lettered, report.remaining) == (6, 1, 0)
    status, reason = store.connection.execute("SELECT status, reason FROM es_dead_letters").fetchone()
    assert status == 400
    assert "timestamp" in reason
    assert outbox_stats(store).dead_lettered_total == 1
