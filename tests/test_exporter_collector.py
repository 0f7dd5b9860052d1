"""The exporter without Prometheus: exposition details, caching, optional families, `/probe` matching, the command."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sentinel.app import open_store
from sentinel.cli.serve_cmd import serve
from sentinel.engine.loader import load_rules
from sentinel.errors import InputError
from sentinel.exporter import StoreExporter, build_registry
from sentinel.exporter.blackbox import ProbeRequestError, probe_families
from sentinel.exporter.compliance import ComplianceFamilies
from sentinel.exporter.family import Family, format_value, render_families
from sentinel.models import Finding, FindingStatus, Observation, ObservationStatus, Severity
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Endpoint, Owner, Registry, System, Tier
from sentinel.registry.scope import Scope
from sentinel.store import SqliteStore
from sentinel.web.listener import add_metrics_routes, parse_listen

NOW = datetime.now(UTC).replace(microsecond=0)


WHO = {"site": "default", "vantage": "internal"}  # a store no instance has recorded itself in: the defaults


def samples(body: bytes, labelled: bool = True) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed without the instance's `site` and `vantage` labels, which each of `/metrics`' samples
    must carry (`labelled`; `/probe` answers as blackbox_exporter does, the scrape's relabelling names the target)."""
    found = [s for family in text_string_to_metric_families(body.decode()) for s in family.samples]
    assert not labelled or all({k: s.labels.get(k) for k in WHO} == WHO for s in found), "a sample without site"
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in WHO))): s.value for s in found}


def registry(department: str = "市大数据管理中心") -> Registry:
    system = System(
        id="portal",
        name="门户",
        owner=Owner(department=department),
        tier=Tier.CITY,
        mlps_level=3,
        endpoints=[Endpoint(url="https://portal.example.gov.cn/")],
    )
    return Registry(scope=Scope(allow=["example.gov.cn"]), systems=(system,))


def finding(severity: Severity = Severity.HIGH, status: FindingStatus = FindingStatus.OPEN) -> Finding:
    return Finding(
        id=f"f-{severity}-{status}",
        rule_id="r",
        title="t",
        severity=severity,
        category="tls",
        system_id="portal",
        target="portal.example.gov.cn:443",
        status=status,
        first_seen=NOW,
        last_seen=NOW,
        occurrences=1,
    )


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return open_store(tmp_path / "s.db")  # with every component's tables, as Sentinel opens it


def test_empty_store_renders_counters_only(store: SqliteStore) -> None:
    got = samples(StoreExporter(store).render())
    assert got[("sentinel_sweeps_started_total", ())] == 0 and got[("sentinel_sweeps_completed_total", ())] == 0
    assert got[("sentinel_outbox_depth", ())] == 0
    per_system = {name for name, labels in got if labels}
    assert not per_system  # nothing about systems before any sweep
    assert all(value == 0 for value in got.values())


def test_unfinished_sweep_has_no_last_success(store: SqliteStore) -> None:
    store.start_sweep(NOW, "t", "x", 3)
    got = samples(StoreExporter(store).render())
    assert got[("sentinel_sweeps_started_total", ())] == 1
    assert got[("sentinel_sweeps_completed_total", ())] == 0
    assert ("sentinel_sweep_last_success_timestamp_seconds", ()) not in got
    assert got[("sentinel_sweep_last_start_timestamp_seconds", ())] == NOW.timestamp()


def test_rendering_is_cached_until_the_store_changes_in_this_or_another_process(store: SqliteStore) -> None:
    exporter = StoreExporter(store, registry())
    exporter.render()
    cached = exporter._cached
    exporter.render()
    assert cached is not None and exporter._cached is cached  # the store part was not re-read
    store.save_findings([finding()])  # this connection
    second = exporter.render()
    assert b'severity="high"' in second
    other = SqliteStore(store.path)  # another writer, like `sentinel run` next to `sentinel serve`
    other.save_findings([finding(Severity.CRITICAL)])
    other.close()
    assert b'severity="critical"' in exporter.render()


def test_findings_carry_tier_and_department_and_unregistered_systems_say_unknown(store: SqliteStore) -> None:
    store.save_findings([finding(), finding(status=FindingStatus.ACKNOWLEDGED), finding(status=FindingStatus.RESOLVED)])
    got = samples(StoreExporter(store, registry()).render())
    key = (
        "sentinel_findings_open",
        (
            ("category", "tls"),
            ("department", "市大数据管理中心"),
            ("severity", "high"),
            ("status", "open"),
            ("system", "portal"),
            ("tier", "city"),
        ),
    )
    assert got[key] == 1
    assert sum(v for (name, _), v in got.items() if name == "sentinel_findings_open") == 2  # resolved is not open
    bare = samples(StoreExporter(store).render())
    assert all(dict(labels)["tier"] == "unknown" for (name, labels) in bare if name == "sentinel_findings_open")


def test_hostile_label_values_are_escaped(store: SqliteStore) -> None:
    department = 'Dept "A"\\B\nnext line'
    body = StoreExporter(store, registry(department)).render()
    info = [
        s for f in text_string_to_metric_families(body.decode()) for s in f.samples if s.name == "sentinel_system_info"
    ]
    assert info[0].labels["department"] == department


def test_fast_exposition_matches_prometheus_client(store: SqliteStore) -> None:
    store.save_findings([finding()])
    store.save_observations(
        [
            Observation(
                "tls", "portal", "portal.example.gov.cn:443", NOW, "tls", data={"cert.not_after": NOW.isoformat()}
            ),
            Observation("http", "portal", "https://portal.example.gov.cn/", NOW, "http", data={"latency_ms": 12.5}),
        ]
    )
    exporter = StoreExporter(store, registry())
    assert samples(exporter.render()) == samples(generate_latest(build_registry(exporter)))


def test_value_formatting() -> None:
    assert [format_value(v) for v in (1.0, 0.0, -3.0, 0.25, float("inf"), float("-inf"))] == [
        "1",
        "0",
        "-3",
        "0.25",
        "+Inf",
        "-Inf",
    ]
    assert format_value(float("nan")) == "NaN"
    assert render_families([]) == b""
    family = Family.counter("x_events", "Events.")
    family.add([], 3)
    assert (
        render_families([family]) == b"# HELP x_events_total Events.\n# TYPE x_events_total counter\nx_events_total 3\n"
    )


def test_outbox_families_report_depth_and_age(store: SqliteStore) -> None:
    exporter = StoreExporter(store)
    assert samples(exporter.render())[("sentinel_outbox_depth", ())] == 0
    store.connection.execute(
        "INSERT INTO es_outbox (stream, doc_id, body, enqueued_at) VALUES ('latest', 'd', '{}', ?)",
        ((NOW - timedelta(minutes=10)).timestamp(),),
    )
    got = samples(exporter.render())
    assert got[("sentinel_outbox_depth", ())] == 1
    assert got[("sentinel_outbox_oldest_age_seconds", ())] >= 600
    assert got[("sentinel_es_documents_dead_lettered_total", ())] == 0


def test_probe_matches_urls_host_ports_and_system_ids_only(store: SqliteStore) -> None:
    store.save_observations(
        [
            Observation(
                "http",
                "portal",
                "https://portal.example.gov.cn/",
                NOW,
                "http",
                data={"reachable": True, "status_code": 301, "redirect_count": 1, "final_scheme": "https"},
            ),
            Observation(
                "tls",
                "portal",
                "portal.example.gov.cn:443",
                NOW,
                "tls",
                data={"cert.not_after": (NOW + timedelta(days=9)).isoformat(), "tls.protocol": "TLSv1.2"},
            ),
            Observation(
                "port",
                "portal",
                "portal.example.gov.cn:443/tcp",
                NOW,
                "tcp_ports",
                ObservationStatus.OK,
                {"declared": True, "state": "filtered", "rtt_ms": 3000.0},
            ),
        ]
    )
    db = store.connection
    http = samples(render_families(probe_families(db, "https://portal.example.gov.cn/", "http_2xx")), labelled=False)
    assert http[("probe_success", ())] == 1
    assert http[("probe_http_status_code", ())] == 301
    assert http[("probe_ssl_earliest_cert_expiry", ())] == (NOW + timedelta(days=9)).timestamp()
    assert http[("probe_tls_version_info", (("version", "TLS 1.2"),))] == 1
    tcp = samples(render_families(probe_families(db, "portal.example.gov.cn:443", "tcp_connect")), labelled=False)
    assert tcp[("probe_success", ())] == 0  # the declared port is filtered
    assert tcp[("probe_duration_seconds", ())] == 3.0
    whole = samples(render_families(probe_families(db, "portal", None)), labelled=False)
    assert whole[("probe_success", ())] == 0
    with pytest.raises(ProbeRequestError, match="never probes on demand") as err:
        probe_families(db, "https://elsewhere.example/", "http_2xx")
    assert err.value.status == 404


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_listen("[::1]:9108") == ("::1", 9108)
    assert parse_listen(":9200") == ("127.0.0.1", 9200)
    for bad in ("9108", "host:", "host:99999", "host:http"):
        with pytest.raises(ValueError, match="is not HOST:PORT"):
            parse_listen(bad)


def test_serve_reports_user_mistakes_clearly(tmp_path: Path, store: SqliteStore) -> None:
    runner = CliRunner()
    bad = runner.invoke(serve, ["--listen", "nonsense", "--store", store.path])
    assert bad.exit_code == 2 and "is not HOST:PORT" in bad.output
    missing = runner.invoke(serve, ["--store", str(tmp_path / "nope.db")])
    assert isinstance(missing.exception, InputError) and "no such store" in str(missing.exception)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = runner.invoke(serve, ["--listen", f"127.0.0.1:{port}", "--store", store.path])
    assert busy.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.output


async def test_unreadable_store_answers_503_not_a_traceback(store: SqliteStore) -> None:
    app = web.Application()
    add_metrics_routes(app, StoreExporter(store))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        store.close()
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 503 and "the store cannot be read" in await resp.text()
    finally:
        await runner.cleanup()


def test_compliance_is_assessed_in_the_background(store: SqliteStore) -> None:
    rules = load_rules([shipped_rules_dir()])
    store.save_observations(
        [Observation("http", "portal", "https://portal.example.gov.cn/", NOW, "http", data={"reachable": True})]
    )
    source = ComplianceFamilies(store.path, registry(), rules, interval=0.05)
    exporter = StoreExporter(store, registry(), [source])
    assert b"sentinel_compliance_ratio" not in exporter.render()  # nothing until the first assessment
    source.start()
    try:
        deadline = time.monotonic() + 20
        while b"sentinel_compliance_ratio{" not in exporter.render() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        source.stop()
    got = samples(exporter.render())
    ratios = {dict(labels)["framework"]: v for (name, labels), v in got.items() if name == "sentinel_compliance_ratio"}
    assert ratios and all(0 <= v <= 1 for v in ratios.values())
    assert all(dict(labels)["system"] == "portal" for (name, labels) in got if name == "sentinel_compliance_ratio")
