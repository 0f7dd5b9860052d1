"""Active port discovery: a sweep of many ports per registered host (kind `port_discovery`), so a service the
registry does not declare is found even when no traffic shows it.

Default ports: nmap's 1,000 most frequent TCP ports (`collectors.port_discovery.ports` overrides). The scan goes
through `ScopedNetwork` (SYN with raw-socket rights, else connect), so scope, per-target and global rate
limits and the circuit breaker apply; ports are probed in random order by a bounded pool of workers, so one
job never queues more admissions than its rate budget needs, and stops starting ports in time to end
inside the job timeout. `sentinel run` sweeps it on its own, daily
interval; it is not in the default `sentinel scan` probe list (1,000 probes per host).

Fields: host, address, method, ports_planned, ports_probed, complete (every planned port was probed before
the job's time ran out), answered (some port answered), open_ports, closed_count, filtered_count,
unknown_count (ports whose answers Sentinel's own receive socket may have dropped on every resend: neither
closed nor filtered), declared_ports, undeclared_open (open ports the registry does not declare) and
undeclared_open_count. The count is left out when it would claim "nothing undeclared" without evidence: when
the sweep was cut short, a port could not be told, or no port answered at all (a silent host proves nothing
about its ports).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import Field, field_validator

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.network import LOST_RESENDS, PortState, ScopedNetwork
from sentinel.collectors.top_ports import TOP_TCP_PORTS
from sentinel.config.settings import ProbeOptions
from sentinel.models import Observation
from sentinel.registry.models import System

_WORKERS = 256  # at most this many ports in flight per job
_LIST_CAP = 200  # bound on listed ports in an observation


class PortDiscoveryOptions(ProbeOptions):
    """`collectors.port_discovery`."""

    ports: list[int] | None = Field(
        default=None, description="ports the sweep tries on every host; default: nmap's 1,000 most frequent TCP ports"
    )

    @field_validator("ports")
    @classmethod
    def _ports(cls, values: list[int] | None) -> list[int] | None:
        if values is None:
            return None
        bad = [v for v in values if not 1 <= v <= 65535]
        if bad:
            raise ValueError(f"ports must be 1-65535: {', '.join(map(str, bad[:10]))}")
        if not values:
            raise ValueError("give at least one port, or leave it out for the top 1,000")
        return sorted(set(values))


class PortDiscoveryProbe(Probe):
    name = "port_discovery"
    kind = "port_discovery"
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "port_discovery": frozenset(
            {"host", "address", "method", "ports_planned", "ports_probed", "complete", "answered", "open_ports"}
            | {"closed_count", "filtered_count", "unknown_count", "declared_ports", "undeclared_open"}
            | {"undeclared_open_count"}
        )
    }
    Options = PortDiscoveryOptions
    #: the top 1,000 ports of every host: daily in `sentinel run`, too long for a plain sweep
    schedule = "run"
    legacy_keys: ClassVar[Mapping[str, str]] = {"discovery_ports": "ports"}

    @property
    def options(self) -> PortDiscoveryOptions:
        return self.settings.probe_options(self.name, PortDiscoveryOptions)

    def ports(self) -> tuple[int, ...]:
        configured = self.options.ports
        return tuple(configured) if configured else TOP_TCP_PORTS

    def plan(self, system: System) -> Iterable[ProbeJob]:
        declared_by_host: dict[str, set[int]] = {}
        for endpoint in system.endpoints:
            declared_by_host.setdefault(endpoint.hostname, set()).update(endpoint.declared_ports)
        ports = self.ports()
        for host, declared in declared_by_host.items():
            yield ProbeJob(self.name, system.id, host, host, ports=ports, declared=tuple(sorted(declared)))

    def budget(self, job: ProbeJob) -> int:
        return max(1, len(job.ports)) * (1 + self.settings.retries + LOST_RESENDS)

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        address = (await net.resolve(job.host))[0]
        method = net.port_scan_method
        probe = net.syn_state if method == "tcp-syn" else net.tcp_state
        order = list(job.ports)
        random.shuffle(order)  # like nmap: no sequential sweep for a firewall to key on
        # Enough workers to keep the target's rate budget busy while each waits out its timeouts, and no more:
        # each worker holds at most one admission, so none queues long, and the in-flight ones drain in bounded time.
        cfg = self.settings
        rate = cfg.per_target_packet_rate if method == "tcp-syn" else cfg.per_target_rate
        per_port = (1 + cfg.retries) * cfg.connect_timeout
        workers = max(1, min(_WORKERS, len(order), math.ceil(rate * per_port)))
        drain = workers / rate + per_port
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + max(0.25 * cfg.job_timeout, cfg.job_timeout - 1.5 * drain)
        states: dict[int, PortState] = {}
        queue = iter(order)

        async def worker() -> None:
            for port in queue:
                if loop.time() >= stop_at:
                    return  # the rest stays unprobed: `complete` says so
                states[port], _ = await probe(address, port)

        await asyncio.gather(*(worker() for _ in range(workers)))
        now = datetime.now(UTC)
        open_ports = sorted(p for p, s in states.items() if s == PortState.OPEN)
        closed = sum(1 for s in states.values() if s == PortState.CLOSED)
        unknown = sum(1 for s in states.values() if s == PortState.UNKNOWN)
        declared = set(job.declared)
        undeclared = [p for p in open_ports if p not in declared]
        complete = len(states) == len(order)
        answered = bool(open_ports) or closed > 0
        data: dict[str, object] = {
            "host": job.host,
            "address": address,
            "method": method,
            "ports_planned": len(order),
            "ports_probed": len(states),
            "complete": complete,
            "answered": answered,
            "open_ports": open_ports[:_LIST_CAP],
            "closed_count": closed,
            "filtered_count": len(states) - len(open_ports) - closed - unknown,
            "unknown_count": unknown,
            "declared_ports": sorted(declared)[:_LIST_CAP],
            "undeclared_open": undeclared[:_LIST_CAP],
        }
        if undeclared or (complete and answered and not unknown):
            data["undeclared_open_count"] = len(undeclared)
        return [self.observation(job, now, data)]
