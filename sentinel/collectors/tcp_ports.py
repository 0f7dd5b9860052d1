"""TCP port state (open / closed / filtered) for declared and high-risk ports, plus host reachability.

The scan is half-open (SYN, `tcp-syn`) when Sentinel has raw-socket rights and `collectors.scan_method`
allows it, otherwise a connect scan (`tcp-connect`); every observation says which.

`host` fields: host, address, reachable, reachable_by (`tcp`: a port answered; `icmp-echo`: every port was
silent but the host answered an echo; null when nothing answered), icmp_rtt_ms (when the echo was asked),
open_ports, ports_probed, method. Like nmap's host discovery, a host that answers anything is up: when every
port is silent and raw sockets are available, an ICMP echo decides before the host is called unreachable.

`port` fields: host, address, port, protocol, state, declared, declared_by, high_risk, rtt_ms, method, and
reachable_from (the vantages the registry allows the port to answer from) when an endpoint restricts it.

A port whose answers may have been dropped by Sentinel's own receive socket (`PortState.UNKNOWN`) gets an
error `port` observation (`error_kind: timeout`), never a state: it neither opens nor resolves a finding. While
any port is unknown, a host that nothing answered is not called unreachable (`reachable` null).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import ClassVar

from pydantic import Field

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.capabilities import RawSocketsUnavailableError
from sentinel.collectors.network import LOST_RESENDS, PortState, ScopedNetwork
from sentinel.config.settings import HIGH_RISK_PORTS, ProbeOptions
from sentinel.models import Observation, ObservationStatus
from sentinel.models.target import port_target
from sentinel.registry.models import System


class TcpPortOptions(ProbeOptions):
    """`collectors.tcp_ports`."""

    high_risk_ports: list[int] = Field(
        default_factory=lambda: list(HIGH_RISK_PORTS), description="scanned on every host besides its declared ports"
    )


class TcpPortProbe(Probe):
    name = "tcp_ports"
    kind = "host"
    phase = 0  # raw packets: first in a sweep
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "host": frozenset(
            {"host", "address", "reachable", "reachable_by", "icmp_rtt_ms", "open_ports", "ports_probed", "method"}
        ),
        "port": frozenset(
            {"host", "address", "port", "protocol", "state", "declared", "declared_by", "high_risk", "rtt_ms"}
            | {"method", "reachable_from", "error_kind"}
        ),
    }
    Options = TcpPortOptions
    legacy_keys: ClassVar[Mapping[str, str]] = {"high_risk_ports": "high_risk_ports"}

    @property
    def options(self) -> TcpPortOptions:
        return self.settings.probe_options(self.name, TcpPortOptions)

    def plan(self, system: System) -> Iterable[ProbeJob]:
        declared_by_host: dict[str, set[int]] = {}
        listed_by_host: dict[str, set[int]] = {}  # ports listed on host endpoints (URL ports are implied)
        # per host and port, the vantages it may answer from; None once an endpoint declares it unrestricted
        vantages_by_host: dict[str, dict[int, set[str] | None]] = {}
        for endpoint in system.endpoints:
            declared_by_host.setdefault(endpoint.hostname, set()).update(endpoint.declared_ports)
            listed = listed_by_host.setdefault(endpoint.hostname, set())
            if endpoint.host is not None:
                listed.update(endpoint.ports)
            allowed = vantages_by_host.setdefault(endpoint.hostname, {})
            for port in endpoint.declared_ports:
                named = None if endpoint.reachable_from is None else {v.value for v in endpoint.reachable_from}
                if named is None or port not in allowed:
                    allowed[port] = named
                elif (known := allowed[port]) is not None:
                    known |= named
        high_risk = set(self.options.high_risk_ports)
        for host, declared in declared_by_host.items():
            ports = tuple(sorted(declared | high_risk))
            yield ProbeJob(
                self.name,
                system.id,
                host,
                host,
                ports=ports,
                declared=tuple(sorted(declared)),
                extra=(
                    *(("listed", str(p)) for p in sorted(listed_by_host[host])),
                    *(
                        ("reachable_from", f"{p}={','.join(sorted(v))}")
                        for p, v in sorted(vantages_by_host[host].items())
                        if v is not None
                    ),
                ),
            )

    def budget(self, job: ProbeJob) -> int:
        # every port with its retries (and the resends of SYNs whose answer our receive socket may have dropped),
        # plus the echo and its retries, asked when every port is silent
        return max(1, len(job.ports)) * (1 + self.settings.retries + LOST_RESENDS) + 1 + self.settings.retries

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        address = (await net.resolve(job.host))[0]
        method, results = await net.port_states(address, job.ports)
        now = datetime.now(UTC)
        high_risk = set(self.options.high_risk_ports)
        listed = {int(v) for k, v in job.extra if k == "listed"}
        restricted = {
            int(p): v.split(",") for k, e in job.extra if k == "reachable_from" for p, _, v in [e.partition("=")]
        }
        observations = [
            Observation(
                kind="port",
                system_id=job.system_id,
                target=port_target(job.host, port),
                observed_at=now,
                probe=self.name,
                status=ObservationStatus.ERROR,
                error="could not tell: Sentinel's receive socket dropped packets while this port's SYNs waited",
                data={
                    "host": job.host,
                    "address": address,
                    "port": port,
                    "protocol": "tcp",
                    "declared": port in job.declared,
                    "method": method,
                    "error_kind": "timeout",
                },
            )
            if state == PortState.UNKNOWN
            else Observation(
                kind="port",
                system_id=job.system_id,
                target=port_target(job.host, port),
                observed_at=now,
                probe=self.name,
                data={
                    "host": job.host,
                    "address": address,
                    "port": port,
                    "protocol": "tcp",
                    "state": state.value,
                    "declared": port in job.declared,
                    "declared_by": ("host" if port in listed else "url") if port in job.declared else None,
                    "high_risk": port in high_risk,
                    "rtt_ms": round(rtt, 3) if rtt is not None else None,
                    "method": method,
                    # the registry's source restriction, for rules that compare it with the observer's vantage
                    **({"reachable_from": restricted[port]} if port in restricted else {}),
                },
            )
            for port, (state, rtt) in zip(job.ports, results, strict=True)
        ]
        answered = [p for p, (s, _) in zip(job.ports, results, strict=True) if s in (PortState.OPEN, PortState.CLOSED)]
        unknown = any(s == PortState.UNKNOWN for s, _ in results)
        reachability: dict[str, object] = {"reachable": bool(answered), "reachable_by": "tcp" if answered else None}
        if not answered and net.raw_sockets:
            try:
                rtt = await net.icmp_echo(address)
            except RawSocketsUnavailableError:
                rtt = None
            reachability["icmp_rtt_ms"] = round(rtt, 3) if rtt is not None else None
            if rtt is not None:
                reachability.update(reachable=True, reachable_by="icmp-echo")
        if not reachability["reachable"] and unknown:
            reachability["reachable"] = None  # a lost answer is not silence
        observations.append(
            Observation(
                kind="host",
                system_id=job.system_id,
                target=job.host,
                observed_at=now,
                probe=self.name,
                data={
                    "host": job.host,
                    "address": address,
                    **reachability,
                    "open_ports": [p for p, (s, _) in zip(job.ports, results, strict=True) if s == PortState.OPEN],
                    "ports_probed": len(job.ports),
                    "method": method,
                },
            )
        )
        return observations
