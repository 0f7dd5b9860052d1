"""TLS handshake facts: negotiated protocol and cipher, certificate, hostname match, chain validity."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.certinfo import certificate_facts
from sentinel.collectors.network import ScopedNetwork
from sentinel.models import Observation, ObservationStatus
from sentinel.models.target import host_port
from sentinel.registry.models import System

#: ports on `host` endpoints that speak TLS from the first byte
TLS_PORTS = frozenset({443, 465, 636, 853, 993, 995, 8443})


@functools.cache
def observing_context() -> ssl.SSLContext:
    """Accepts anything the server offers, so old protocols and bad certificates can be *seen*."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        ctx.set_ciphers("ALL")
    return ctx


@functools.cache  # loading the system trust store per job dominated sweep time and memory
def verifying_context(ca_file: str | None) -> ssl.SSLContext:
    """Chain validation against the system trust store (plus an optional CA file); hostname checked apart."""
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if ca_file:
        ctx.load_default_certs()
    ctx.check_hostname = False
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with contextlib.suppress(ssl.SSLError):
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


class TlsProbe(Probe):
    name = "tls"
    kind = "tls"

    def plan(self, system: System) -> Iterable[ProbeJob]:
        seen: set[tuple[str, int]] = set()
        for endpoint in system.endpoints:
            if endpoint.url is not None:
                parts = urlsplit(endpoint.url)
                pairs = [(endpoint.hostname, endpoint.url_port or 443)] if parts.scheme == "https" else []
            else:
                pairs = [(endpoint.hostname, p) for p in endpoint.declared_ports if p in TLS_PORTS]
            for host, port in pairs:
                if (host, port) not in seen:
                    seen.add((host, port))
                    yield ProbeJob(self.name, system.id, host, host_port(host, port), ports=(port,))

    def budget(self, job: ProbeJob) -> int:
        return 2

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        address = (await net.resolve(job.host))[0]
        port = job.ports[0]
        sni = job.host if not _is_ip(job.host) else None
        now = datetime.now(UTC)
        try:
            session = await net.open_tls(address, port, observing_context(), sni, _session_facts)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            return [
                Observation(
                    kind=self.kind,
                    system_id=job.system_id,
                    target=job.target,
                    observed_at=now,
                    probe=self.name,
                    status=ObservationStatus.ERROR,
                    error=f"TLS handshake failed: {_reason(exc)}",
                    data={"host": job.host, "address": address, "port": port},
                )
            ]
        der = session.pop("der")
        data: dict[str, Any] = {"host": job.host, "address": address, "port": port, **session}
        if der:
            try:
                data.update(certificate_facts(der, job.host, now))
            except ValueError as exc:
                data["cert.parse_error"] = str(exc)[:300]
        ca_file = str(self.settings.ca_file) if self.settings.ca_file else None
        try:
            await net.open_tls(address, port, verifying_context(ca_file), sni, lambda _s: None)
            data["chain.valid"], data["chain.error"] = True, None
        except ssl.SSLCertVerificationError as exc:
            data["chain.valid"], data["chain.error"] = False, exc.verify_message or str(exc)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            data["chain.error"] = f"could not verify: {_reason(exc)}"
        return [
            Observation(
                kind=self.kind, system_id=job.system_id, target=job.target, observed_at=now, probe=self.name, data=data
            )
        ]


def _session_facts(sslobj: ssl.SSLObject) -> dict[str, Any]:
    """What the live session says about itself; read before the connection closes."""
    cipher = sslobj.cipher()
    return {
        "tls.protocol": sslobj.version(),
        "tls.cipher": cipher[0] if cipher else None,
        "tls.cipher_bits": cipher[2] if cipher else None,
        "der": sslobj.getpeercert(binary_form=True),
    }


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    return (getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)[:300]
