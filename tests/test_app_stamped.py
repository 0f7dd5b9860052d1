"""app.py `stamped` and `Sentinel.ingest`: every observation is recorded with the instance's site and vantage,
and nothing else about it changes (`stamped` builds the copies with the constructor, field by position)."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from sentinel.app import Sentinel, stamped
from sentinel.config.settings import Settings
from sentinel.models import Observation, ObservationStatus, Observer, Vantage
from sentinel.registry.loader import load_registry_text
from sentinel.traffic.analyze import with_unregistered

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
HEXI = Observer(site="hexi-district", vantage=Vantage.EXTRANET)
#: every field of Observation: a new one must be passed on by `stamped` (then add it here and to _full)
FIELDS = ("kind", "system_id", "target", "observed_at", "probe", "status", "data", "error", "site", "vantage")


def _full(**more: object) -> Observation:
    """An observation with every field set to something other than its default."""
    values: dict[str, object] = {
        "kind": "traffic.portscan",
        "system_id": "portal",
        "target": "203.0.113.9 -> 10.20.1.5",
        "observed_at": datetime(2026, 3, 2, 16, tzinfo=timezone(timedelta(hours=8))),
        "probe": "pcap",
        "status": ObservationStatus.ERROR,
        "data": {"scan.hosts": 40, "note": "河西区", "ports": [22, 443]},
        "error": "truncated capture",
        "site": None,
        "vantage": None,
    }
    values.update(more)
    return Observation(**values)  # type: ignore[arg-type]


def test_observation_fields_are_the_ones_stamped_passes_on() -> None:
    assert tuple(f.name for f in dataclasses.fields(Observation)) == FIELDS


def test_stamping_keeps_every_field_and_sets_site_and_vantage() -> None:
    original = _full()
    (copy,) = stamped([original], HEXI)
    assert copy == dataclasses.replace(original, site="hexi-district", vantage=Vantage.EXTRANET)
    for name in FIELDS:
        if name not in ("site", "vantage"):
            assert getattr(copy, name) is getattr(original, name), name  # the same objects, not copies
    assert (copy.site, copy.vantage) == ("hexi-district", Vantage.EXTRANET)
    assert (original.site, original.vantage) == (None, None)  # the caller's observation is left as it was


def test_stamping_restamps_another_instances_and_leaves_its_own_as_they_are() -> None:
    mine = _full(site="hexi-district", vantage=Vantage.EXTRANET)
    other_site = _full(site="city", vantage=Vantage.EXTRANET)
    other_vantage = _full(site="hexi-district", vantage=Vantage.INTERNET)
    defaults = Observation(kind="host", system_id="portal", target="10.20.1.5", observed_at=T0, probe="icmp")
    out = stamped([mine, other_site, other_vantage, defaults], HEXI)
    assert out[0] is mine
    assert [(o.site, o.vantage) for o in out] == [("hexi-district", Vantage.EXTRANET)] * 4
    assert out[3] == dataclasses.replace(defaults, site="hexi-district", vantage=Vantage.EXTRANET)
    assert stamped([], HEXI) == []


REGISTRY = with_unregistered(
    load_registry_text(
        textwrap.dedent(
            """
            scope: {allow: ["10.20.0.0/16"]}
            systems:
              - {id: portal, name: Portal, owner: {department: IT}, tier: city, mlps_level: 3,
                 endpoints: [{host: 10.20.1.5, ports: [443]}]}
            """
        )
    )
)
RULE = """
id: traffic_scan_wide
title: Wide horizontal scan
title_zh: 大范围横向扫描
severity: high
category: threat
observation: traffic.portscan
condition: {field: scan.hosts, op: ge, value: 20}
evidence: [source_ip, scan.hosts]
remediation: Block the source at the boundary.
remediation_zh: 在边界处封禁该来源地址。
"""


def test_ingest_records_stamped_rows_findings_and_the_audit_record(tmp_path: Path) -> None:
    rules = tmp_path / "rules" / "traffic"
    rules.mkdir(parents=True)
    (rules / "traffic_scan_wide.yaml").write_text(textwrap.dedent(RULE).lstrip())
    settings = Settings(store=tmp_path / "s.db", rules=[tmp_path / "rules"], site="hexi-district", vantage="extranet")
    app = Sentinel(settings, registry=REGISTRY, clock=lambda: T0)
    at = datetime(2026, 3, 2, 16, tzinfo=timezone(timedelta(hours=8)))
    data = {"source_ip": "203.0.113.9", "scan.hosts": 40, "where": "河西区", "seen": T0, "ratio": 0.1, "ok": None}
    scan = Observation("traffic.portscan", "portal", "203.0.113.9 -> *:22/tcp", at, "pcap", data=data)
    broken = Observation(
        "traffic.portscan", "portal", "198.51.100.7 -> *:22/tcp", at, "pcap", ObservationStatus.ERROR, {}, "cut"
    )
    try:
        outcome = app.ingest([scan, broken], T0, "pcap:x.pcap")
        assert [(o.site, o.vantage) for o in outcome.observations] == [("hexi-district", Vantage.EXTRANET)] * 2
        assert [o.data for o in outcome.observations] == [data, {}]
        rows = app.store.connection.execute(
            "SELECT target, observed_at, status, error, data, site, vantage FROM observations_latest ORDER BY rowid"
        ).fetchall()
        assert [tuple(r) for r in rows] == [
            (
                scan.target,
                "2026-03-02T08:00:00+00:00",
                "ok",
                None,
                json.dumps(data, ensure_ascii=False, default=str),
                "hexi-district",
                "extranet",
            ),
            (broken.target, "2026-03-02T08:00:00+00:00", "error", "cut", "{}", "hexi-district", "extranet"),
        ]
        (finding,) = outcome.changes.new
        assert (finding.rule_id, finding.site, finding.vantage) == ("traffic_scan_wide", "hexi-district", "extranet")
        assert finding.evidence["scan.hosts"] == 40
        (record,) = app.store.sweeps()
        assert record["source"] == "pcap:x.pcap"
        summary = {"source": "pcap:x.pcap", "observations": 2, "errors": 1, "new": 1, "resolved": 0, "reopened": 0}
        assert record["summary"] == json.dumps(summary, ensure_ascii=False)
    finally:
        app.close()
