"""Several instances, one Elasticsearch and one Prometheus (issue 14): the city and its districts, each probing from
its vantage points, ship to the same cluster and nothing collides.

Every instance probes the same loopback service (a management port declared `reachable_from: [internal]` and a
declared port nobody listens on), with its own store, and ships through its own outbox to one Elasticsearch double.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from sentinel.exporter import StoreExporter
from sentinel.models import Finding, Vantage
from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.documents import latest_id
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.sinks.elasticsearch.setup import Installer
from sentinel.sinks.shipper import Shipper
from tests.es_double import EsDouble
from tests.support.vantage_lab import SYSTEM, closed_port, instance, lab_registry, listening

RESTRICTION = "port_reachable_only_from_declared_vantages"
EVERYWHERE = "port_declared_open"  # the silent declared port: seen from every vantage


def sweep_and_ship(
    tmp_path: Path, double: EsDouble, who: list[tuple[str, Vantage]]
) -> dict[tuple[str, Vantage], list[Finding]]:
    """Each (site, vantage) sweeps the same services and ships everything; its findings as its store has them."""
    silent = closed_port()
    found: dict[tuple[str, Vantage], list[Finding]] = {}
    es = {"url": double.url, "outbox_min_free_bytes": 0, "backoff_initial": 0.01, "backoff_max": 0.05}
    with listening() as management:
        registry = lab_registry(management, silent)
        for site, vantage in who:
            app = instance(tmp_path, registry, site, vantage, sinks={"elasticsearch": es})
            try:
                client = build_client(ElasticsearchSettings.model_validate({**es, "site": site}))
                Installer(client, ElasticsearchSettings.model_validate({**es, "site": site})).install()
                client.close()
                app.scan()
                (sink,) = app.sinks
                report = Shipper(app.store, sink).drain(timeout=10)
                assert report.remaining == 0 and report.dead_lettered == 0, report
                found[(site, vantage)] = app.store.list_findings()
            finally:
                app.close()
    return found


def test_two_vantages_of_one_site_ship_distinct_findings_and_documents(tmp_path: Path) -> None:
    with EsDouble() as double:
        found = sweep_and_ship(tmp_path, double, [("city", Vantage.INTERNET), ("city", Vantage.INTERNAL)])
        latest = double.docs("sentinel-findings-latest-city")
        history = double.docs("sentinel-findings-history-city")
        observations = double.docs("sentinel-observations-city")
    internet, internal = found[("city", Vantage.INTERNET)], found[("city", Vantage.INTERNAL)]
    # The same problem seen from both vantages is two findings of one system, with two ids and two documents.
    (outside,) = [f for f in internet if f.rule_id == EVERYWHERE]
    (inside,) = [f for f in internal if f.rule_id == EVERYWHERE]
    assert (outside.system_id, outside.target) == (inside.system_id, inside.target) and outside.id != inside.id
    assert {f.vantage for f in internet} == {Vantage.INTERNET} and {f.vantage for f in internal} == {Vantage.INTERNAL}
    # Only the Internet line sees the management port it should not.
    assert [f.rule_id for f in internet if f.rule_id == RESTRICTION] == [RESTRICTION]
    assert not [f for f in internal if f.rule_id == RESTRICTION]
    # Every finding once per vantage: no id shared, no document overwritten.
    ids = [f.id for f in internet + internal]
    assert len(ids) == len(set(ids))
    assert (
        set(latest)
        == {latest_id(f) for f in internet + internal}
        == {f"city:{f.vantage}:{f.id}" for f in internet + internal}
    )
    for f in internet + internal:
        doc = latest[latest_id(f)]
        assert (doc["sentinel"]["site"], doc["sentinel"]["vantage"], doc["sentinel"]["finding"]["id"]) == (
            "city",
            f.vantage,
            f.id,
        )
        assert doc["labels"]["vantage"] == f.vantage and doc["observer"]["name"] == f"city/{f.vantage}"
    assert len(history) == len(internet) + len(internal)  # one snapshot per new finding, none lost to a clash
    assert {d["sentinel"]["vantage"] for d in observations.values()} == {"internet", "internal"}
    assert sum(1 for d in observations.values() if d["sentinel"]["vantage"] == "internet") == len(observations) // 2


def test_each_site_writes_its_own_indices_and_the_city_reads_the_estate_by_pattern(tmp_path: Path) -> None:
    with EsDouble() as double:
        found = sweep_and_ship(tmp_path, double, [("city", Vantage.INTERNET), ("hexi-district", Vantage.INTERNAL)])
        district = double.docs("sentinel-findings-latest-hexi-district")
        estate = double.docs("sentinel-findings-latest-*")
        indices = double.indices("sentinel-*")
    assert {d["sentinel"]["site"] for d in district.values()} == {"hexi-district"}
    assert set(district) == {latest_id(f) for f in found[("hexi-district", Vantage.INTERNAL)]}
    everything = [f for findings in found.values() for f in findings]
    assert len(estate) == len(everything)  # the pattern sees every site's state, each finding once
    assert {d["sentinel"]["site"] for d in estate.values()} == {"city", "hexi-district"}
    for site in ("city", "hexi-district"):
        assert {f"sentinel-findings-latest-{site}", f"sentinel-findings-history-{site}"} <= set(indices)
    assert not [name for name in indices if name in ("sentinel-findings-latest", "sentinel-findings-history")]


def test_metrics_carry_the_site_and_vantage_of_the_instance(tmp_path: Path) -> None:
    silent = closed_port()
    with listening() as management:
        registry = lab_registry(management, silent)
        bodies = {}
        for vantage in (Vantage.INTERNET, Vantage.INTERNAL):
            app = instance(tmp_path, registry, "hexi-district", vantage)
            try:
                app.scan()
                bodies[vantage] = StoreExporter(app.store, registry).render(use_cache=False).decode()
            finally:
                app.close()
    for vantage, body in bodies.items():
        samples = [s for f in text_string_to_metric_families(body) for s in f.samples if s.name.startswith("sentinel_")]
        assert samples
        assert all((s.labels["site"], s.labels["vantage"]) == ("hexi-district", vantage) for s in samples)
        open_by_rule = {
            s.labels["category"]: s.value
            for s in samples
            if s.name == "sentinel_findings_open" and s.labels["system"] == SYSTEM
        }
        assert open_by_rule  # the declared port nobody answers on: open from both vantages
    internet = [line for line in bodies[Vantage.INTERNET].splitlines() if line.startswith("sentinel_findings_open{")]
    assert any('severity="high"' in line and 'category="exposure"' in line for line in internet)  # the restriction
    internal = [line for line in bodies[Vantage.INTERNAL].splitlines() if line.startswith("sentinel_findings_open{")]
    assert not any('severity="high"' in line and 'category="exposure"' in line for line in internal)
