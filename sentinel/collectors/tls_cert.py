"""TLS handshake facts: negotiated protocol and cipher, certificate, hostname match, chain validity.

One handshake per endpoint, accepting whatever the server offers (old protocols, bad certificates),
so they can be *seen*. Everything is read from the live session before it closes; the chain is then
judged by `tls_trust.certificate_report`, the same verdict `tls_scan` gives (no second, verifying
handshake: OpenSSL's verdict would depend on the security level of the context).

Observation `tls`, target `host:port`: host, address, port, tls.protocol, tls.cipher, tls.cipher_bits;
cert.* (certinfo: subject, issuer, sans, not_before/not_after, days_to_expiry, self_signed,
hostname_match, key_type/key_bits, signature_hash, sha256) and cert.signature_algorithm,
cert.signature_sha1; chain.sent, chain.complete, chain.trusted and chain.valid (the same verdict; None:
could not tell), chain.error (why not valid), chain.trust_error, chain.sha1_signed. A handshake that
fails is an error observation with `error_kind` refused | timeout | connect | protocol | circuit_open.
"""

from __future__ import annotations

import _ssl
import asyncio
import functools
import ssl
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.network import CircuitOpen, ScopedNetwork
from sentinel.collectors.tls_trust import REPORT_FIELDS, certificate_report
from sentinel.config.settings import ProbeOptions
from sentinel.models import Observation
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


class TlsOptions(ProbeOptions):
    """`collectors.tls` and `collectors.tls_scan`."""

    ca_file: Path | None = Field(default=None, description="CA certificates trusted besides the system's")


class TlsProbe(Probe):
    name = "tls"
    kind = "tls"
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "tls": REPORT_FIELDS
        | {"host", "address", "port", "error_kind", "tls.protocol", "tls.cipher", "tls.cipher_bits", "chain.valid"}
    }
    Options = TlsOptions
    legacy_keys: ClassVar[Mapping[str, str]] = {"ca_file": "ca_file"}

    @property
    def options(self) -> TlsOptions:
        return self.settings.probe_options(self.name, TlsOptions)

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
        return 1

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        address = (await net.resolve(job.host))[0]
        port = job.ports[0]
        sni = job.host if not _is_ip(job.host) else None
        now = datetime.now(UTC)
        base: dict[str, Any] = {"host": job.host, "address": address, "port": port}
        try:
            session = await net.open_tls(address, port, observing_context(), sni, session_facts)
        except CircuitOpen as exc:  # backing off this target: nothing was sent
            return [self.observation(job, now, {**base, "error_kind": "circuit_open"}, f"not probed: {exc}"[:300])]
        except (OSError, ssl.SSLError, TimeoutError, ValueError) as exc:
            # ValueError: the session could not be read (e.g. "handshake not done yet")
            reason = f"TLS handshake failed: {failure_reason(exc)}"
            return [self.observation(job, now, {**base, "error_kind": error_kind(exc)}, reason)]
        ders: list[bytes] = session.pop("chain")
        data: dict[str, Any] = {**base, **session, **certificate_report(ders, job.host, self.options.ca_file, now)}
        # the `tls` kind's historical names for the shared verdict
        data["chain.valid"] = data.get("chain.trusted")
        if "chain.error" not in data:
            data["chain.error"] = data.get("chain.trust_error") if data["chain.valid"] is False else None
        return [self.observation(job, now, data)]


def session_facts(sslobj: ssl.SSLObject) -> dict[str, Any]:
    """What the live session says about itself, read before the connection closes: once a server has
    answered (or botched) close_notify, OpenSSL no longer hands out the peer certificate."""
    cipher = sslobj.cipher()
    return {
        "tls.protocol": sslobj.version(),
        "tls.cipher": cipher[0] if cipher else None,
        "tls.cipher_bits": cipher[2] if cipher else None,
        "chain": unverified_chain(sslobj),
    }


def unverified_chain(sslobj: ssl.SSLObject) -> list[bytes]:
    """The certificates the server sent, leaf first, read from the live session."""
    # CPython >= 3.10 has the unverified chain on the private object (public from 3.13)
    inner = getattr(sslobj, "_sslobj", None)
    chain_of = getattr(inner, "get_unverified_chain", None) or getattr(sslobj, "get_unverified_chain", None)
    if chain_of is not None:
        chain = chain_of() or []
        return [c.public_bytes(_ssl.ENCODING_DER) for c in chain]
    leaf = sslobj.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def error_kind(exc: BaseException) -> str:
    """The contract's error_kind for a failed TLS connection."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLError | ValueError | ConnectionResetError):
        return "protocol"  # the peer does not speak (this) TLS, or dropped the handshake
    return "connect"


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    return (getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)[:300]
