"""Who observed (issue 14): every instance has a site and a vantage, stamped on what it records, and the vantage is
part of a finding's identity."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel.app import Sentinel, stamped
from sentinel.config.settings import Settings, load_settings
from sentinel.errors import InputError
from sentinel.models import DEFAULT_OBSERVER, Observation, Observer, Vantage
from sentinel.models.finding import fingerprint, legacy_fingerprint
from sentinel.registry.loader import load_registry_text
from sentinel.sinks import build_sinks
from sentinel.sinks.elasticsearch.templates import IndexNames
from sentinel.store import SqliteStore
from sentinel.store.sqlite import FindingQuery

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
REGISTRY = load_registry_text(
    """
scope: {allow: [10.20.0.0/24]}
systems:
  - {id: portal, name: Portal, owner: {department: IT}, tier: city, mlps_level: 3,
     endpoints: [{host: 10.20.0.5, ports: [443]}]}
"""
)


def port(state: str) -> Observation:
    data = {"address": "10.20.0.5", "port": 3389, "state": state, "declared": False, "high_risk": True}
    return Observation("port", "portal", "10.20.0.5:3389/tcp", T0, "tcp_ports", data=data)


def test_the_vantage_is_part_of_a_findings_identity() -> None:
    ids = {v: fingerprint("port_high_risk_closed", "portal", "10.20.0.5:3389/tcp", v) for v in Vantage}
    assert len(set(ids.values())) == len(Vantage)
    assert all(len(i) == 64 for i in ids.values())
    assert fingerprint("r", "s", "t") == fingerprint("r", "s", "t", Vantage.INTERNAL)  # a single site's default
    assert legacy_fingerprint("r", "s", "t") not in ids.values()


def test_settings_name_the_site_and_vantage_and_refuse_bad_ones_at_their_line(tmp_path: Path) -> None:
    assert Settings().observer == DEFAULT_OBSERVER == Observer("default", Vantage.INTERNAL)
    env = {"SENTINEL_SITE": "hexi-district", "SENTINEL_VANTAGE": "extranet"}
    assert load_settings(environ=env).observer == Observer("hexi-district", Vantage.EXTRANET)
    config = tmp_path / "sentinel.yaml"
    config.write_text("store: s.db\nsite: Hexi_District\nvantage: dmz\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_settings(config, environ={})
    site, vantage = caught.value.problems
    assert (site.file, site.line) == (str(config), 2) and "'Hexi_District' is not a valid site" in site.message
    assert (vantage.file, vantage.line) == (str(config), 3)
    assert "unknown vantage 'dmz' (one of internet, extranet, internal)" in vantage.message
    with pytest.raises(InputError, match="not a valid site"):
        load_settings(environ={"SENTINEL_SITE": "x" * 40})


def test_the_ingest_stamps_every_observation_and_the_tracker_every_finding(tmp_path: Path) -> None:
    who = Observer("city", Vantage.INTERNET)
    assert {(o.site, o.vantage) for o in stamped([port("open"), port("closed")], who)} == {("city", Vantage.INTERNET)}
    app = Sentinel(Settings(store=tmp_path / "s.db", site="city", vantage="internet"), registry=REGISTRY)
    try:
        outcome = app.ingest([port("open")], T0, "sweep")
        (obs,) = outcome.observations
        assert (obs.site, obs.vantage, obs.get("vantage")) == ("city", Vantage.INTERNET, "internet")
        assert obs.to_dict()["vantage"] == "internet" and obs.to_dict()["site"] == "city"
        (finding,) = outcome.changes.new
        assert finding.id == fingerprint("port_high_risk_closed", "portal", "10.20.0.5:3389/tcp", Vantage.INTERNET)
        assert (finding.to_dict()["site"], finding.to_dict()["vantage"]) == ("city", "internet")
        stored = app.store.get_finding(finding.id)
        assert stored is not None and (stored.site, stored.vantage) == ("city", Vantage.INTERNET)
        (row,) = app.store.observations_about("portal", [])
        assert (row.site, row.vantage) == ("city", "internet")
        assert app.store.count_findings(FindingQuery(vantages=[Vantage.INTERNET], sites=["city"])) == 1
        assert app.store.count_findings(FindingQuery(vantages=[Vantage.INTERNAL])) == 0
        assert app.store.finding_counts(FindingQuery(), "site", "vantage") == [("city", "internet", 1)]
    finally:
        app.close()


def test_a_bare_store_and_tracker_use_the_defaults_until_an_instance_records_itself(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    try:
        assert store.identity() is None
        assert store.claim_identity(Observer("city", Vantage.EXTRANET), T0) == []  # nothing from before sites
        assert store.identity() == Observer("city", Vantage.EXTRANET)
        reopened = SqliteStore(tmp_path / "s.db")
        assert reopened.identity() == Observer("city", Vantage.EXTRANET)
        reopened.close()
    finally:
        store.close()


def test_elasticsearch_index_names_follow_the_instance_site() -> None:
    names = IndexNames("sentinel", "hexi-district")
    assert (names.latest, names.history, names.observations) == (
        "sentinel-findings-latest-hexi-district",
        "sentinel-findings-history-hexi-district",
        "sentinel-observations-hexi-district",
    )
    assert names.latest_pattern == "sentinel-findings-latest-*"
    (sink,) = build_sinks(Settings(site="hexi-district", sinks={"elasticsearch": {"url": "http://127.0.0.1:9200"}}))
    assert sink.names.latest == names.latest  # type: ignore[attr-defined]
    with pytest.raises(InputError, match=r"sinks\.elasticsearch\.site: 'city' is not this instance's site"):
        build_sinks(Settings(site="hexi-district", sinks={"elasticsearch": {"url": "http://x:9200", "site": "city"}}))
