"""app.py `Sentinel.sweep`: the composition root runs the anomaly engine and the exceptions file in every sweep,
against the demo estate on loopback: a `for: 3` rule opens on the third sweep, also across a restart, and an
accepted risk is suppressed with its owner and expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sentinel.app import Sentinel
from sentinel.demo.estate import DemoEstate
from sentinel.findings.policy import FindingsSettings
from sentinel.models import FindingStatus
from sentinel.registry.loader import load_registry
from tests.support.estate import demo_settings

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


async def test_sweeps_keep_memory_and_apply_exceptions(tmp_path: Path) -> None:
    async with DemoEstate(tmp_path / "estate") as estate:
        registry_file = tmp_path / "registry.yaml"
        registry_file.write_text(estate.registry_yaml(), encoding="utf-8")
        registry = load_registry(registry_file)
        permits = next(s for s in registry.systems if s.id == "district-permits")
        url = permits.endpoints[0].url
        exceptions = tmp_path / "exceptions.yaml"
        exceptions.write_text(
            "exceptions:\n"
            "  - id: EXC-1\n"
            "    rule: endpoint_reachable\n"
            "    system: district-permits\n"
            "    owner: 区行政审批局\n"
            "    justification: System being migrated; the old endpoint is down on purpose.\n"
            "    approved_by: 区网信办\n"
            "    approved_on: 2026-11-01\n"
            "    expires: 2027-01-31\n",
            encoding="utf-8",
        )
        settings = demo_settings(estate, registry_file, tmp_path / "s.db", connect_timeout=2.0, per_target_burst=None)
        policy = FindingsSettings(exceptions=exceptions)
        clock = iter(T0 + timedelta(minutes=5 * i) for i in range(100))

        def make() -> Sentinel:
            return Sentinel(settings, registry=registry, clock=lambda: next(clock), findings_policy=policy)

        app = make()
        for _ in range(2):
            await app.sweep()
        down = app.store.list_findings(rule_ids=["endpoint_down_sustained"])
        assert down == []  # held for two sweeps only: still pending
        (reachable,) = app.store.list_findings(rule_ids=["endpoint_reachable"], system_ids=["district-permits"])
        assert reachable.status == FindingStatus.SUPPRESSED and reachable.status_by == "exception:EXC-1"
        app.close()

        app = make()  # a restart: the hysteresis counters come back from the store
        await app.sweep()
        (sustained,) = app.store.list_findings(rule_ids=["endpoint_down_sustained"], system_ids=["district-permits"])
        assert sustained.status == FindingStatus.OPEN and sustained.target == url
        app.close()
