"""The runner: every probe's jobs, shuffled, raw-packet probes (port scan, echo) planned first and run with job slots
of their own, so a full sweep's port part ends about when a port-only sweep would and connections start at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import ClassVar

from sentinel.collectors import build_probes
from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, plan_sweep, run_sweep_jobs
from sentinel.config.settings import CollectorSettings
from sentinel.models import Observation
from sentinel.registry.loader import load_registry_text
from sentinel.registry.models import System
from sentinel.registry.scope import Scope

REGISTRY = "scope: {allow: [10.9.0.0/24]}\nsystems:\n" + "".join(
    f"  - id: s{i}\n    name: System {i}\n    owner: {{department: D}}\n    tier: city\n    mlps_level: 2\n"
    f"    endpoints: [{{url: 'https://10.9.0.{i + 1}/'}}, {{host: 10.9.0.{i + 1}, ports: [22]}}]\n"
    for i in range(30)
)


def test_raw_packet_probes_are_planned_first_and_every_phase_is_shuffled() -> None:
    registry = load_registry_text(REGISTRY)
    probes = build_probes(CollectorSettings())
    planned = plan_sweep(registry, probes, shuffle_seed=1)
    phases = [p.probe.phase for p in planned]
    assert phases == sorted(phases) and set(phases) == {0, 1}
    first = [p for p in planned if p.probe.phase == 0]
    assert {p.probe.name for p in first} == {"tcp_ports", "icmp"}
    assert len(first) == 2 * len(registry.systems)
    hosts = [p.job.host for p in first]
    assert hosts != sorted(hosts) and [p.probe.name for p in first] != sorted(p.probe.name for p in first)
    # the same jobs as an unordered plan: nothing added, nothing dropped
    again = plan_sweep(registry, probes, shuffle_seed=2)
    assert sorted((p.probe.name, p.job.target) for p in planned) == sorted((p.probe.name, p.job.target) for p in again)


class _Conversation(Probe):
    name = "conversation"
    kind = "conversation"
    finished: ClassVar[list[float]] = []

    def plan(self, system: System) -> Iterable[ProbeJob]:
        return []

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        await asyncio.sleep(0.3)
        self.finished.append(time.monotonic())
        return [self.observation(job, datetime.now(UTC), {"host": job.host})]


class _Raw(_Conversation):
    name = "raw"
    kind = "raw"
    phase = 0

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        self.finished.append(time.monotonic())
        return [self.observation(job, datetime.now(UTC), {"host": job.host})]


async def test_raw_packet_jobs_do_not_wait_for_the_conversations_slots() -> None:
    settings = CollectorSettings()
    net = ScopedNetwork(Scope(allow=["10.9.0.0/24"]), settings, raw_sockets=False)
    conversation, raw = _Conversation(settings), _Raw(settings)
    jobs = [PlannedJob(conversation, ProbeJob("conversation", f"s{i}", "10.9.0.1", f"t{i}")) for i in range(3)]
    jobs.append(PlannedJob(raw, ProbeJob("raw", "s9", "10.9.0.1", "t9")))
    _Conversation.finished.clear()
    start = time.monotonic()
    try:
        found = await run_sweep_jobs(jobs, net, max_jobs=1, job_timeout=5)
    finally:
        await net.close()
    assert len(found) == 4
    raw_done, *conversations_done = sorted(_Conversation.finished)
    assert raw_done - start < 0.2  # at once, not after the three conversations (one slot, 0.3 s each)
    assert conversations_done[-1] - start >= 0.85  # the conversations still took their one slot in turn
