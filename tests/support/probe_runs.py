"""One system of loopback endpoints and the probe runs against it, for the tcp_ports, http, tls and network tests."""

from __future__ import annotations

from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.config.settings import CollectorSettings
from sentinel.models import Observation
from sentinel.registry.models import System
from sentinel.registry.scope import Scope
from tests.support.registry_files import system_doc

IP = "127.79.0.10"
OTHER = "127.79.1.10"  # outside the scope below
SCOPE = Scope(allow=["127.79.0.0/24"])
SETTINGS = CollectorSettings(connect_timeout=1.0, http_timeout=3.0, per_target_rate=100, per_target_burst=50)


def system(*endpoints: dict[str, object]) -> System:
    return System.model_validate(system_doc("sys", "S", list(endpoints), mlps_level=3))


async def run_probe(probe_cls: type, sys: System, settings: CollectorSettings = SETTINGS) -> list[Observation]:
    """Every job the probe plans for `sys`, through a ScopedNetwork of SCOPE."""
    probe = probe_cls(settings)
    net = ScopedNetwork(SCOPE, settings)
    try:
        out: list[Observation] = []
        for job in probe.plan(sys):
            out.extend(await run_job(PlannedJob(probe, job), net, 20))
        return out
    finally:
        await net.close()
