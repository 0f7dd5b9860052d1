"""ICMP echo reachability and round-trip time per registered host (kind `icmp`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import ClassVar

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.capabilities import RawSocketsUnavailableError
from sentinel.collectors.network import ScopedNetwork
from sentinel.models import Observation
from sentinel.registry.models import System


class IcmpEchoProbe(Probe):
    name = "icmp"
    kind = "icmp"
    phase = 0  # raw packets: first in a sweep
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "icmp": frozenset({"host", "address", "method", "reachable", "rtt_ms", "error_kind"})
    }

    def plan(self, system: System) -> Iterable[ProbeJob]:
        for host in dict.fromkeys(endpoint.hostname for endpoint in system.endpoints):
            yield ProbeJob(self.name, system.id, host, host)

    def budget(self, job: ProbeJob) -> int:
        return 1 + self.settings.retries

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        address = (await net.resolve(job.host))[0]
        now = datetime.now(UTC)
        base: dict[str, object] = {"host": job.host, "address": address, "method": "icmp-echo"}
        try:
            rtt = await net.icmp_echo(address)
        except RawSocketsUnavailableError as exc:
            return [self.observation(job, now, {**base, "error_kind": "unsupported"}, error=str(exc))]
        data = {**base, "reachable": rtt is not None, "rtt_ms": round(rtt, 3) if rtt is not None else None}
        return [self.observation(job, now, data)]
