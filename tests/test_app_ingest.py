"""app.py `Sentinel.ingest`: the one path from observations to findings, whatever their source.

Live capture windows go through it as sweeps do: rules with memory act on traffic, the audit record says
where the observations came from (and is not counted as a sweep), and the kernel's capture counts reach
/metrics."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sentinel.app import Sentinel
from sentinel.config.settings import Settings
from sentinel.exporter.collector import StoreExporter
from sentinel.models import Observation
from sentinel.registry.loader import load_registry_text
from sentinel.traffic.analyze import with_unregistered

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
WINDOW = timedelta(minutes=1)
SCANNER = "203.0.113.9 -> *:22/tcp"
REGISTRY = with_unregistered(
    load_registry_text(
        """
        scope: {allow: ["10.20.0.0/16"]}
        systems:
          - {id: portal, name: Portal, owner: {department: IT}, tier: city, mlps_level: 3,
             endpoints: [{host: 10.20.1.5, ports: [443]}]}
        """.replace("        ", "")
    )
)
RULE = """
id: traffic_scan_sustained
title: Sustained horizontal scan
title_zh: 持续的横向扫描
severity: high
category: threat
observation: traffic.portscan
for: 3
condition: {field: scan.hosts, op: ge, value: 20}
evidence: [source_ip, scan.hosts]
remediation: Block the source at the boundary.
remediation_zh: 在边界处封禁该来源地址。
"""


def _app(tmp_path: Path, clock: list[datetime]) -> Sentinel:
    rules = tmp_path / "rules" / "traffic"
    rules.mkdir(parents=True)
    (rules / "traffic_scan_sustained.yaml").write_text(textwrap.dedent(RULE).lstrip())
    settings = Settings(store=tmp_path / "s.db", rules=[tmp_path / "rules"])
    return Sentinel(settings, registry=REGISTRY, clock=lambda: clock[0])


def _window(at: datetime, hosts: int, dropped: int = 0) -> list[Observation]:
    scan = Observation(
        kind="traffic.portscan",
        system_id="unregistered",
        target=SCANNER,
        observed_at=at,
        probe="sniff",
        data={"source_ip": "203.0.113.9", "scan.hosts": hosts, "capture.dropped": dropped},
    )
    capture = Observation(
        kind="traffic.capture",
        system_id="unregistered",
        target="capture lo",
        observed_at=at,
        probe="sniff",
        data={"capture.interface": "lo", "capture.received": 1000 + dropped, "capture.dropped": dropped},
    )
    return [scan, capture]


def test_a_for_3_traffic_rule_fires_over_three_capture_windows(tmp_path: Path) -> None:
    clock = [T0]
    app = _app(tmp_path, clock)
    try:
        opened = []
        for i in range(3):
            clock[0] = T0 + i * WINDOW
            outcome = app.ingest(_window(clock[0], hosts=40), clock[0], "sniff:lo")
            opened.append([f.rule_id for f in outcome.changes.new])
        assert opened == [[], [], ["traffic_scan_sustained"]]
        # a fresh composition over the same store (the next window of `sentinel run`) keeps counting
        clock[0] = T0 + 3 * WINDOW
        again = Sentinel(app.settings, registry=REGISTRY, clock=lambda: clock[0])
        try:
            outcome = again.ingest(_window(clock[0], hosts=40), clock[0], "sniff:lo")
            assert [f.rule_id for f in outcome.changes.updated] == ["traffic_scan_sustained"]
        finally:
            again.close()
    finally:
        app.close()


def test_capture_windows_are_audited_but_not_counted_as_sweeps(tmp_path: Path) -> None:
    clock = [T0]
    app = _app(tmp_path, clock)
    try:
        app.ingest(_window(T0, hosts=5, dropped=37), T0, "sniff:lo")
        (record,) = app.store.sweeps()
        assert record["source"] == "sniff:lo" and record["finished_at"] is not None
        body = StoreExporter(app.store, REGISTRY).render(use_cache=False).decode()
        who = 'site="default",vantage="internal"'  # the instance's defaults, recorded by its first ingest
        assert f'sentinel_capture_window_packets_dropped{{{who},interface="lo"}} 37' in body
        assert f'sentinel_capture_window_packets_received{{{who},interface="lo"}} 1037' in body
        assert f"sentinel_sweeps_completed_total{{{who}}} 0" in body
    finally:
        app.close()
