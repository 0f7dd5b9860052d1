"""Shared plumbing of the per-port service probes (`banners`, `exposure`): planning, bounded reads, results.

Streams come from `ScopedNetwork.open_stream`, so scope, rate limits and per-target concurrency
apply; here we only bound what we read (bytes and time) and shape observations.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from sentinel.collectors.base import ProbeJob
from sentinel.config.settings import HIGH_RISK_PORTS, ProbeOptions
from sentinel.models import Observation, ObservationStatus
from sentinel.models.target import port_target
from sentinel.registry.models import System

#: the most a service probe reads from one peer
MAX_READ_BYTES = 16_384


class ServiceOptions(ProbeOptions):
    """`collectors.banners` and `collectors.exposure`: which ports to talk to, and the versions catalogue."""

    high_risk_ports: list[int] = Field(
        default_factory=lambda: list(HIGH_RISK_PORTS), description="probed on every host besides its declared ports"
    )
    vulnerable_versions: Path | None = Field(default=None, description="known-vulnerable versions file")


#: the flat `collectors:` keys these options had before they were per probe
SERVICE_LEGACY_KEYS = {"high_risk_ports": "high_risk_ports", "vulnerable_versions": "vulnerable_versions"}


def plan_service_jobs(probe: str, system: System, wanted: Collection[int], high_risk: Iterable[int]) -> list[ProbeJob]:
    """One job per host: the host's declared ports plus the high-risk list, kept to the ports in `wanted`."""
    declared_by_host: dict[str, set[int]] = {}
    for endpoint in system.endpoints:
        declared_by_host.setdefault(endpoint.hostname, set()).update(endpoint.declared_ports)
    risky = set(high_risk)
    jobs = []
    for host, declared in declared_by_host.items():
        ports = tuple(sorted((declared | risky) & set(wanted)))
        if ports:
            jobs.append(ProbeJob(probe, system.id, host, host, ports=ports, declared=tuple(sorted(declared))))
    return jobs


@functools.cache
def insecure_tls_context() -> ssl.SSLContext:
    """For reading a greeting behind implicit TLS: certificates are the TLS probe's business, not ours.

    One context per process: building it loads the system CA store (milliseconds each time), which cost a
    sweep of 1,354 hosts a fifth of its CPU when it was made per connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect_error_kind(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "connect"


async def read_until(
    reader: asyncio.StreamReader,
    done: Callable[[bytes], bool],
    timeout: float,
    limit: int = MAX_READ_BYTES,
) -> bytes:
    """Read until `done(buffer)`, EOF, `limit` bytes or `timeout` seconds, whichever comes first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    buf = bytearray()
    while len(buf) < limit and not done(bytes(buf)):
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(min(4096, limit - len(buf))), remaining)
        except TimeoutError:
            break
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


async def close_stream(writer: asyncio.StreamWriter, goodbye: bytes = b"") -> None:
    """Say goodbye if the protocol has a word for it, then close without waiting long."""
    with contextlib.suppress(OSError, RuntimeError, ssl.SSLError):
        if goodbye and not writer.is_closing():
            writer.write(goodbye)
            await asyncio.wait_for(writer.drain(), 1.0)
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


def service_observation(
    kind: str,
    probe: str,
    job: ProbeJob,
    port: int,
    data: Mapping[str, Any],
    error: str | None = None,
) -> Observation:
    base: dict[str, Any] = {"host": job.host, "port": port, "protocol": "tcp", "declared": port in job.declared}
    return Observation(
        kind=kind,
        system_id=job.system_id,
        target=port_target(job.host, port),
        observed_at=datetime.now(UTC),
        probe=probe,
        status=ObservationStatus.ERROR if error else ObservationStatus.OK,
        data={**base, **data},
        error=error,
    )
