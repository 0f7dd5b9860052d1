"""Shipper behaviour under the faults a cluster throws: per-item 429/400/404, 503, refused, slow, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.documents import latest_id
from sentinel.sinks.elasticsearch.outbox import outbox_stats
from sentinel.sinks.elasticsearch.setup import Installer
from sentinel.sinks.elasticsearch.shipper import Shipper, classify
from sentinel.sinks.elasticsearch.templates import IndexNames
from tests.es_double import EsDouble
from tests.support.es_scenarios import es_settings, open_store
from tests.support.findings import make_finding

NAMES = IndexNames("sentinel")


@pytest.fixture
def double() -> Iterator[EsDouble]:
    with EsDouble() as es:
        yield es


@pytest.fixture
def client(double: EsDouble) -> Iterator[Elasticsearch]:
    c = build_client(es_settings(double.url, request_timeout=0.5))
    Installer(c, es_settings(double.url)).install()
    yield c
    c.close()


def test_classification() -> None:
    assert [classify(s) for s in (200, 201, 409, 429, 500, 503, 0, 401, 403, 413, 400, 404)] == [
        "done", "done", "duplicate", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "dead", "dead",
    ]  # fmt: skip


def test_backoff_is_exponential_capped_and_jittered(double: EsDouble, client: Elasticsearch, tmp_path: Path) -> None:
    es = es_settings(double.url, backoff_initial=1.0, backoff_max=8.0)
    store = open_store(tmp_path / "s.db", es)
    low = Shipper(store, client, es, jitter=lambda: 0.0)
    high = Shipper(store, client, es, jitter=lambda: 1.0)
    assert [low.backoff(n) for n in (1, 2, 3, 4, 5, 9)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [high.backoff(n) for n in (1, 2, 3, 4, 5, 9)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_item_429_retries_only_the_failed_items(double: EsDouble, client: Elasticsearch, tmp_path: Path) -> None:
    es = es_settings(double.url)
    store = open_store(tmp_path / "s.db", es)
    findings = [make_finding(i) for i in range(40)]
    store.save_findings(findings)
    throttled = [latest_id(f) for f in findings[:3]]
    for doc_id in throttled:
        double.faults.item_status[doc_id] = [429, 429]
    report = Shipper(store, client, es).drain(timeout=10)
    assert (report.shipped, report.retried, report.remaining) == (80, 6, 0)
    # 80 documents once, plus two resends of each of the three throttled ones: nothing that succeeded was resent.
    assert double.state.bulk_items == 80 + 6
    assert double.count(NAMES.latest) == 40


def test_item_400_and_404_go_to_dead_letters(double: EsDouble, client: Elasticsearch, tmp_path: Path) -> None:
    es = es_settings(double.url)
    store = open_store(tmp_path / "s.db", es)
    findings = [make_finding(i) for i in range(10)]
    store.save_findings(findings)
    double.faults.item_status[latest_id(findings[0])] = [400]
    double.faults.item_status[latest_id(findings[1])] = [404]
    report = Shipper(store, client, es).drain(timeout=10)
    assert (report.shipped, report.dead_lettered, report.remaining) == (18, 2, 0)
    rows = store.connection.execute("SELECT doc_id, status, reason FROM es_dead_letters ORDER BY status").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(latest_id(findings[0]), 400), (latest_id(findings[1]), 404)]
    assert "mapper_parsing_exception" in rows[0][2]
    stats = outbox_stats(store)
    assert (stats.dead_lettered_total, stats.dead_letters, stats.depth) == (2, 2, 0)


def test_whole_request_503_is_retried(double: EsDouble, client: Elasticsearch, tmp_path: Path) -> None:
    es = es_settings(double.url)
    store = open_store(tmp_path / "s.db", es)
    store.save_findings([make_finding(i) for i in range(5)])
    double.faults.bulk_status = [503, 503]
    report = Shipper(store, client, es).drain(timeout=10)
    assert (report.shipped, report.retried, report.remaining) == (10, 20, 0)
    assert report.statuses[503] == 20
    assert double.count(NAMES.latest) == 5


def test_refused_then_recovered_ships_everything_once(double: EsDouble, client: Elasticsearch, tmp_path: Path) -> None:
    es = es_settings(double.url)
    store = open_store(tmp_path / "s.db", es)
    store.save_findings([make_finding(i) for i in range(30)])
    double.stop()
    down = Shipper(store, client, es).drain(timeout=0.3)
    assert down.shipped == 0
    assert down.remaining == 60
    assert down.last_error is not None
    assert "unreachable" in down.last_error
    assert outbox_stats(store).depth == 60
    double.start()
    up = Shipper(store, client, es).drain(timeout=10)
    assert (up.shipped, up.remaining) == (60, 0)
    assert double.count(NAMES.latest) == 30
    assert double.count(NAMES.history) == 30


def test_slow_cluster_times_out_then_deduplicates(double: EsDouble, tmp_path: Path) -> None:
    """The cluster stores a batch but answers after our timeout: the retry is answered 409, nothing doubles."""
    es = es_settings(double.url, request_timeout=0.2)
    client = build_client(es)
    Installer(client, es).install()
    store = open_store(tmp_path / "s.db", es)
    store.save_findings([make_finding(i) for i in range(10)])
    double.faults.delay_after_bulk = 0.5
    slow = Shipper(store, client, es).drain(timeout=0.1)
    assert slow.shipped == 0
    assert slow.remaining == 20
    double.faults.delay_after_bulk = 0.0
    report = Shipper(store, client, es).drain(timeout=10)
    assert (report.shipped, report.deduplicated, report.remaining) == (0, 20, 0)
    assert double.count(NAMES.latest) == 10
    client.close()


def test_wrong_credentials_keep_everything_queued(double: EsDouble, client: Elasticsearch, tmp_path: Path) -> None:
    es = es_settings(double.url)
    store = open_store(tmp_path / "s.db", es)
    store.save_findings([make_finding(i) for i in range(5)])
    double.api_key = "the-right-key"
    report = Shipper(store, client, es).drain(timeout=0.2)
    assert (report.shipped, report.dead_lettered, report.remaining) == (0, 0, 10)
    assert report.last_error is not None
    assert "401" in report.last_error


@pytest.mark.parametrize("fault", ["impostor", "garbled_bulk"])
def test_an_answer_that_is_not_elasticsearch_is_not_success(
    double: EsDouble, client: Elasticsearch, tmp_path: Path, fault: str
) -> None:
    es = es_settings(double.url)
    store = open_store(tmp_path / "s.db", es)
    store.save_findings([make_finding(i) for i in range(5)])
    setattr(double.faults, fault, True)
    report = Shipper(store, client, es).drain(timeout=0.2)
    assert (report.shipped, report.remaining) == (0, 10)
    setattr(double.faults, fault, False)
    after = Shipper(store, client, es).drain(timeout=5)
    assert after.remaining == 0
    assert double.count(NAMES.latest) == 5


SHIP = """
import sys
from sentinel.cli.es_cmd import es
es(["ship", "--store", sys.argv[1], "--timeout", "20"])
"""


def test_kill_9_mid_flush_then_restart_is_exactly_once(double: EsDouble, client: Elasticsearch, tmp_path: Path) -> None:
    es = es_settings(double.url, batch_size=200)
    store = open_store(tmp_path / "s.db", es)
    store.save_findings([make_finding(i) for i in range(1000)])
    store.close()
    env = {
        **os.environ,
        "SENTINEL_ELASTICSEARCH_URL": double.url,
        "SENTINEL_ELASTICSEARCH_BATCH_SIZE": "200",
        "SENTINEL_ELASTICSEARCH_BACKOFF_INITIAL": "0.01",
    }
    # Each batch is stored by the cluster, then its answer is held back: the kill lands between the two.
    double.faults.delay_after_bulk = 5.0
    proc = subprocess.Popen([sys.executable, "-c", SHIP, str(tmp_path / "s.db")], env=env)
    deadline = time.monotonic() + 15
    while double.state.bulk_requests < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert double.state.bulk_requests == 1
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert double.count(NAMES.latest) + double.count(NAMES.history) == 200  # stored, never acknowledged

    double.faults.delay_after_bulk = 0.0
    again = subprocess.run([sys.executable, "-c", SHIP, str(tmp_path / "s.db")], env=env, timeout=60, check=False)
    assert again.returncode == 0
    assert double.count(NAMES.latest) == 1000
    assert double.count(NAMES.history) == 1000
    reopened = open_store(tmp_path / "s.db", es)
    stats = outbox_stats(reopened)
    assert (stats.depth, stats.shipped_total, stats.deduplicated_total) == (0, 1800, 200)
