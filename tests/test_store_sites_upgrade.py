"""Upgrading a store written before sites and vantages (issue 14): every finding keeps its identity and history.

The store is the one `tests/data/make_store_before_sites.py` built with the code of before the change (its SQL
text is `tests/data/store_before_sites.sql`): findings of a stateless and of a stateful rule, an operator's
acknowledgement, a resolution, the notification ledger, a delivered Alertmanager alert and Elasticsearch documents
still queued. The instance that owns it records its site and vantage at its first ingest, and adopts it all.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sentinel.app import Sentinel, open_store
from sentinel.config.settings import Settings
from sentinel.errors import StoreError
from sentinel.findings.lifecycle import LifecycleEvent
from sentinel.models import FindingStatus, Observation, Observer, Vantage
from sentinel.models.finding import fingerprint, legacy_fingerprint
from sentinel.registry.loader import load_registry_text
from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.sinks.elasticsearch.setup import Installer
from sentinel.sinks.shipper import Shipper
from tests.es_double import EsDouble

DUMP = Path(__file__).parent / "data" / "store_before_sites.sql"
T2 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # after the old store's last sweep (T0 + 1 h)
REGISTRY = load_registry_text(
    """
scope: {allow: [10.20.0.0/24]}
systems:
  - id: city-portal
    name: 市政府门户网站
    owner: {department: 市大数据管理中心, email: ops@example.gov.cn}
    tier: city
    mlps_level: 3
    endpoints:
      - {host: 10.20.0.5, ports: [22, 443]}
"""
)
CITY_INTERNET = Observer("city", Vantage.INTERNET)


def old_store(tmp_path: Path) -> Path:
    path = tmp_path / "sentinel.db"
    with sqlite3.connect(path) as db:
        db.executescript(DUMP.read_text(encoding="utf-8"))
    return path


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return [tuple(r) for r in db.execute(sql)]


def port(p: int, state: str, at: datetime) -> Observation:
    data = {"host": "10.20.0.5", "address": "10.20.0.5", "port": p, "protocol": "tcp", "state": state,
            "declared": False, "high_risk": True, "method": "tcp-connect"}  # fmt: skip
    return Observation("port", "city-portal", f"10.20.0.5:{p}/tcp", at, "tcp_ports", data=data)


def banner(text: str, at: datetime) -> Observation:
    data = {"address": "10.20.0.5", "port": 22, "banner": text, "service": "ssh"}
    return Observation("banner", "city-portal", "10.20.0.5:22/tcp", at, "banners", data=data)


def settings(path: Path, observer: Observer = CITY_INTERNET, **sinks: dict[str, object]) -> Settings:
    return Settings(store=path, site=observer.site, vantage=observer.vantage, sinks=sinks)


def test_the_fixture_is_a_store_from_before_sites(tmp_path: Path) -> None:
    path = old_store(tmp_path)
    assert rows(path, "SELECT version FROM schema_versions WHERE component = 'core'") == [(4,)]
    for fid, rule, system, target in rows(path, "SELECT id, rule_id, system_id, target FROM findings"):
        assert fid == legacy_fingerprint(str(rule), str(system), str(target))


def test_findings_keep_identity_history_and_memory_across_the_upgrade(tmp_path: Path) -> None:
    path = old_store(tmp_path)
    before = {r[1:]: r for r in rows(path, "SELECT id, rule_id, target, status, first_seen, occurrences FROM findings")}
    history = {
        fid: rows(
            path, f"SELECT at, actor, from_status, to_status, reason FROM finding_events WHERE finding_id = '{fid}'"
        )
        for fid, *_ in before.values()
    }
    store = open_store(path)  # the new code opens it: columns added, nothing adopted yet
    legacy = store.list_findings()
    assert store.identity() is None and {f.vantage for f in legacy} == {None}
    assert {f.id for f in legacy} == {r[0] for r in before.values()}  # readable as they were
    store.close()

    app = Sentinel(settings(path), registry=REGISTRY, ship_inline=False)
    try:
        # A sweep from the Internet line: MySQL and RDP still open, Redis still closed, the banner still changed.
        outcome = app.ingest(
            [
                port(3306, "open", T2),
                port(3389, "open", T2),
                port(6379, "closed", T2),
                banner("SSH-2.0-dropbear_2020.81", T2),
            ],
            T2,
            "sweep",
        )
        assert app.store.identity() == CITY_INTERNET
        assert not outcome.changes.new and not outcome.changes.reopened  # nothing seen again is taken for new
        after = {(f.rule_id, f.target): f for f in app.store.list_findings()}
        assert len(after) == len(before)
        for (fid, rule, target, status, first_seen, occurrences), f in (
            (before_row, after[(before_row[1], before_row[2])]) for before_row in before.values()
        ):
            assert f.id == fingerprint(str(rule), "city-portal", str(target), Vantage.INTERNET) != fid
            assert (f.site, f.vantage) == ("city", Vantage.INTERNET)
            assert f.first_seen.isoformat() == first_seen  # the same finding, not a new one
            assert f.status.value == status or (rule, status) == ("banner_changed", "open")
            events = app.store.finding_events(f.id)
            assert [tuple(e.values()) for e in events[: len(history[fid])]] == history[fid]
            assert f"former id {fid}" in events[len(history[fid])]["reason"]
            seen_again = target != "10.20.0.5:6379/tcp"
            assert f.occurrences == int(str(occurrences)) + (1 if seen_again else 0)
        acknowledged = after[("port_high_risk_closed", "10.20.0.5:3389/tcp")]
        assert acknowledged.status == FindingStatus.ACKNOWLEDGED and acknowledged.status_by == "alice"
        # The engine's memory (per rule, system and target) still knows the learned banner: the operator can
        # accept the new one as the baseline of the re-keyed finding.
        changed = after[("banner_changed", "10.20.0.5:22/tcp")]
        app.tracker.act(changed, LifecycleEvent.ACCEPT_BASELINE, "bob", "planned upgrade", T2 + timedelta(minutes=1))
        assert app.store.get_finding(changed.id).status == FindingStatus.RESOLVED  # type: ignore[union-attr]
        # The notification ledger follows the id, so the owner is not told again about what they were told.
        ((finding_id, key),) = rows(path, "SELECT finding_id, event_key FROM notify_sent")
        mysql = after[("port_high_risk_closed", "10.20.0.5:3306/tcp")]
        assert finding_id == mysql.id and key.startswith(f"new:{mysql.id}:")  # type: ignore[union-attr]
        assert rows(path, "SELECT COUNT(*) FROM observations_latest WHERE site != 'city' OR vantage != 'internet'") == [
            (0,)
        ]
        # History stays append-only after its one rewrite.
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            app.store.connection.execute("UPDATE finding_events SET reason = 'x'")
    finally:
        app.close()


def test_queued_and_delivered_sink_state_follows_the_new_ids(tmp_path: Path) -> None:
    path = old_store(tmp_path)
    former = {str(r[1]): str(r[0]) for r in rows(path, "SELECT id, target FROM findings")}
    with EsDouble() as double:
        es = {"url": double.url, "outbox_min_free_bytes": 0, "ship_observations": False}
        alertmanager = {"url": "http://127.0.0.1:9", "min_severity": "high"}
        app = Sentinel(
            settings(path, elasticsearch=es, alertmanager=alertmanager), registry=REGISTRY, ship_inline=False
        )
        try:
            app.store.claim_identity(CITY_INTERNET, T2)
            new = {f.target: f.id for f in app.store.list_findings()}
            # Alertmanager: the alerts delivered under the former ids and labels are resolved; active ones fire anew.
            queued = rows(path, "SELECT doc_id, body FROM outbox WHERE sink = 'alertmanager' ORDER BY seq")
            bodies = {str(doc_id): json.loads(str(body)) for doc_id, body in queued}
            for target in ("10.20.0.5:3306/tcp", "10.20.0.5:3389/tcp"):
                old = bodies[former[target]]
                assert old["resolved"] and not old["firing"]
                assert (
                    old["alert"]["labels"]["finding_id"] == former[target] and "vantage" not in old["alert"]["labels"]
                )
                fresh = bodies[new[target]]
                assert fresh["firing"] and fresh["alert"]["labels"]["vantage"] == "internet"
                assert fresh["alert"]["labels"]["site"] == "city"
            # Elasticsearch: the rows queued before the upgrade ship, then the site's index holds each finding once,
            # under site:vantage:id.
            es_settings = ElasticsearchSettings.model_validate({**es, "site": "city"})
            client = build_client(es_settings)
            Installer(client, es_settings).install()
            sink = next(s for s in app.sinks if s.name == "elasticsearch")
            report = Shipper(app.store, sink).drain(timeout=10)
            client.close()
            assert report.remaining == 0 and report.dead_lettered == 0
            latest = double.docs("sentinel-findings-latest-city")
            assert set(latest) == {f"city:internet:{fid}" for fid in new.values()}
            assert all(doc["sentinel"]["vantage"] == "internet" for doc in latest.values())
            assert double.indices("sentinel-findings-latest*") == ["sentinel-findings-latest-city"]
            history = double.docs("sentinel-findings-history-city").values()
            assert set(new.values()) <= {d["sentinel"]["finding"]["id"] for d in history}  # goes on under the new id
            assert set(former.values()) <= {d["sentinel"]["finding"]["id"] for d in history}  # what was queued before
        finally:
            app.close()


def test_a_store_never_mixes_two_vantages(tmp_path: Path) -> None:
    path = old_store(tmp_path)
    app = Sentinel(settings(path), registry=REGISTRY, ship_inline=False)
    app.ingest([port(3306, "open", T2)], T2, "sweep")
    app.close()
    other = Sentinel(settings(path, Observer("city", Vantage.INTERNAL)), registry=REGISTRY, ship_inline=False)
    try:
        with pytest.raises(StoreError, match="holds what site 'city' observed from vantage 'internet'"):
            other.ingest([port(3306, "open", T2)], T2, "sweep")
        assert {f.vantage for f in other.store.list_findings()} == {Vantage.INTERNET}
    finally:
        other.close()
