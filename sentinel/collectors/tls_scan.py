"""TLS in depth: every protocol version offered, weak suites accepted, chain, key, stapling.

Python's `ssl` (OpenSSL 3) can no longer offer SSLv3 or legacy suites, so this probe writes its own
ClientHellos (`tlswire`) over raw streams from `ScopedNetwork.open_stream`, one connection per
attempt, and reads only the server's first flight: it never completes a handshake. Connections per
endpoint are bounded: one hello per version, then a few per weak-suite family (see `budget`).

Observation `tls_scan`, target `host:port`, fields (a value of None means "could not tell"):
  tls.versions_offered, tls.offers_{sslv3,tls1_0,tls1_1,tls1_2,tls1_3}, tls.legacy_versions_offered,
  tls.versions_unknown, tls.alerts; tls.preferred_version/_suite, tls.forward_secrecy, tls.legacy_suite,
  tls.legacy_forward_secrecy; tls.weak_suites (IANA names), tls.weak_families (+ _unknown, _truncated);
  cert.* (certinfo: key type and bits, signature hash, expiry, self-signed...), cert.signature_algorithm,
  cert.signature_sha1; chain.sent, chain.intermediates_sent/_used/_needed, chain.complete,
  chain.missing_issuer, chain.trusted, chain.trust_error, chain.sha1_signed; ocsp.requested, ocsp.stapled,
  ocsp.cert_status; scan.connections, scan.errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.network import CircuitOpen, ScopedNetwork
from sentinel.collectors.tls_cert import (
    TlsOptions,
    TlsProbe,
    failure_reason,
    observing_context,
    unverified_chain,
)
from sentinel.collectors.tls_trust import REPORT_FIELDS, certificate_report
from sentinel.collectors.tlswire import (
    SUITES,
    ClientHelloSpec,
    ServerFlight,
    ServerFlightParser,
    TlsParseError,
    TlsVersion,
    WeakFamily,
    build_client_hello,
    suite_name,
)
from sentinel.collectors.tlswire.suites import LEGACY_SUITES, TLS13_SUITES, suites_in
from sentinel.models import Observation
from sentinel.registry.models import System, is_ip

#: accepted suites looked for per weak family (each acceptance costs one more connection)
MAX_PER_FAMILY = 3
#: hard cap on what the version and weak-suite sweeps may open for one endpoint
MAX_CONNECTIONS = len(TlsVersion) + len(WeakFamily) * MAX_PER_FAMILY + 1
LEGACY_VERSIONS = (TlsVersion.SSL3, TlsVersion.TLS1_0, TlsVersion.TLS1_1)
_OFFER_FIELDS = {
    TlsVersion.SSL3: "tls.offers_sslv3",
    TlsVersion.TLS1_0: "tls.offers_tls1_0",
    TlsVersion.TLS1_1: "tls.offers_tls1_1",
    TlsVersion.TLS1_2: "tls.offers_tls1_2",
    TlsVersion.TLS1_3: "tls.offers_tls1_3",
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One hello and what came back: a flight (possibly an alert), a clean rejection, or an error."""

    flight: ServerFlight | None = None
    #: the server closed or reset the connection without a word: a rejection, not an error
    rejected: bool = False
    #: refused | timeout | connect | protocol | circuit_open: the attempt says nothing about the server's TLS
    error_kind: str | None = None
    error: str | None = None

    def offered(self, version: TlsVersion) -> bool | None:
        if self.error_kind is not None:
            return None
        hello = self.flight.server_hello if self.flight else None
        return hello is not None and hello.version == version

    def suite(self) -> int | None:
        hello = self.flight.server_hello if self.flight else None
        return hello.cipher_suite if hello is not None and not hello.is_hello_retry else None


def _x25519_share() -> bytes:
    # imported when a probe runs: the settings import this module only for its Options
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    return (
        X25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


class TlsScanProbe(Probe):
    name = "tls_scan"
    kind = "tls_scan"
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "tls_scan": REPORT_FIELDS
        | {"host", "address", "port", "error_kind", "scan.connections", "scan.errors", *_OFFER_FIELDS.values()}
        | {"tls.versions_offered", "tls.versions_unknown", "tls.legacy_versions_offered", "tls.alerts"}
        | {"tls.preferred_version", "tls.preferred_suite", "tls.forward_secrecy", "tls.legacy_suite"}
        | {"tls.legacy_forward_secrecy", "tls.weak_suites", "tls.weak_families", "tls.weak_families_unknown"}
        | {"tls.weak_families_truncated", "ocsp.requested", "ocsp.stapled", "ocsp.response_bytes"}
        | {"ocsp.response_status", "ocsp.cert_status", "ocsp.next_update", "ocsp.parse_error"}
    }
    Options = TlsOptions
    legacy_keys: ClassVar[Mapping[str, str]] = {"ca_file": "ca_file"}

    @property
    def options(self) -> TlsOptions:
        return self.settings.probe_options(self.name, TlsOptions)

    def plan(self, system: System) -> Iterable[ProbeJob]:
        # the same endpoints as the `tls` probe: https URLs and declared TLS ports
        for job in TlsProbe(self.settings).plan(system):
            yield dataclasses.replace(job, probe=self.name)

    def budget(self, job: ProbeJob) -> int:
        return MAX_CONNECTIONS

    # -- one endpoint ---------------------------------------------------------------------
    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        address = (await net.resolve(job.host))[0]
        port = job.ports[0]
        sni = None if is_ip(job.host) else job.host
        now = datetime.now(UTC)
        exchange = _Exchanger(net, address, port, sni, net.settings.tls_timeout)

        sweep = await asyncio.gather(*(exchange.version(v) for v in TlsVersion))
        attempts = dict(zip(TlsVersion, sweep, strict=True))
        base: dict[str, Any] = {"host": job.host, "address": address, "port": port}
        if all(a.error_kind for a in sweep):
            kinds = Counter(a.error_kind for a in sweep)
            kind = kinds.most_common(1)[0][0] or "connect"
            reason = next(a.error for a in sweep if a.error_kind == kind)
            return [
                self.observation(
                    job, now, {**base, "error_kind": kind, "scan.connections": exchange.connections}, reason
                )
            ]

        data = {**base, **_version_facts(attempts)}
        offered: list[TlsVersion] = [v for v in TlsVersion if attempts[v].offered(v)]
        legacy_offered: list[TlsVersion] = [v for v in offered if v != TlsVersion.TLS1_3]
        data.update(_preference_facts(attempts, offered))
        data.update(await _weak_suite_facts(exchange, attempts, legacy_offered))

        cert_flight = next(
            (f for v in reversed(legacy_offered) if (f := attempts[v].flight) is not None and f.certificates), None
        )
        if cert_flight is not None:
            ders = list(cert_flight.certificates)
            data["ocsp.requested"] = True
            data["ocsp.stapled"] = cert_flight.ocsp_response is not None
            if cert_flight.ocsp_response is not None:
                data.update(ocsp_facts(cert_flight.ocsp_response))
        else:  # TLS 1.3 only: the Certificate message is encrypted, so fetch the chain with `ssl`
            ders = await exchange.chain_via_ssl()
            data["ocsp.stapled"] = None
        data.update(certificate_report(ders, job.host, self.options.ca_file, now))
        data["scan.connections"] = exchange.connections
        data["scan.errors"] = exchange.errors[:10]
        return [self.observation(job, now, data)]


def ocsp_facts(der: bytes) -> dict[str, Any]:
    """What the stapled OCSP response says (its signature is the client's business, not checked here)."""
    from cryptography.x509 import ocsp  # imported when a probe runs, as in `_x25519_share`

    out: dict[str, Any] = {"ocsp.response_bytes": len(der)}
    try:
        response = ocsp.load_der_ocsp_response(der)
        out["ocsp.response_status"] = response.response_status.name.lower()
        if response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL:
            out["ocsp.cert_status"] = response.certificate_status.name.lower()
            next_update = response.next_update_utc
            out["ocsp.next_update"] = next_update.isoformat() if next_update else None
    except ValueError as exc:
        out["ocsp.parse_error"] = str(exc)[:300]
    return out


class _Exchanger:
    """Sends hellos to one endpoint through ScopedNetwork and counts what it opened."""

    def __init__(self, net: ScopedNetwork, address: str, port: int, sni: str | None, timeout: float) -> None:
        self.net, self.address, self.port, self.sni, self.timeout = net, address, port, sni, timeout
        self.connections = 0
        self.errors: list[str] = []
        self._key_share = _x25519_share()

    async def version(self, version: TlsVersion) -> Attempt:
        suites = TLS13_SUITES if version == TlsVersion.TLS1_3 else LEGACY_SUITES
        return await self.hello(version, suites)

    async def hello(self, version: TlsVersion, suites: Sequence[int]) -> Attempt:
        if self.connections >= MAX_CONNECTIONS:
            return Attempt(error_kind="budget", error="connection budget for this endpoint is spent")
        spec = ClientHelloSpec(version, suites, self.sni, key_share=self._key_share)
        self.connections += 1
        attempt = await self._exchange(build_client_hello(spec))
        if attempt.error:
            self.errors.append(f"{version.label}: {attempt.error}"[:200])
        return attempt

    async def _exchange(self, payload: bytes) -> Attempt:
        return await exchange_hello(self.net, self.address, self.port, payload, self.timeout)

    async def chain_via_ssl(self) -> list[bytes]:
        """Certificates of a TLS 1.3 handshake through `ssl` (one more connection), leaf first."""
        if self.connections >= MAX_CONNECTIONS:
            return []
        self.connections += 1
        try:
            return await self.net.open_tls(self.address, self.port, observing_context(), self.sni, unverified_chain)
        except (OSError, ssl.SSLError, TimeoutError, ValueError) as exc:
            self.errors.append(f"certificate fetch: {failure_reason(exc)}"[:200])
            return []


async def exchange_hello(
    net: ScopedNetwork,
    address: str,
    port: int,
    payload: bytes,
    timeout: float,
    parser: ServerFlightParser | None = None,
) -> Attempt:
    """One connection: send a hello, read the server's first flight (bounded by the parser and `timeout`)."""
    parser = parser if parser is not None else ServerFlightParser()
    try:
        reader, writer = await net.open_stream(address, port)
    except ConnectionRefusedError:
        return Attempt(error_kind="refused", error="connection refused")
    except CircuitOpen as exc:  # Sentinel is backing off this target: nothing was sent
        return Attempt(error_kind="circuit_open", error=str(exc)[:200])
    except TimeoutError:
        return Attempt(error_kind="timeout", error="connect timed out")
    except OSError as exc:
        return Attempt(error_kind="connect", error=f"cannot connect: {exc.strerror or exc}"[:200])
    try:
        writer.write(payload)
        await writer.drain()
        async with asyncio.timeout(timeout):
            while not parser.flight.complete:
                chunk = await reader.read(16384)
                if not chunk:
                    break
                parser.feed(chunk)
    except TlsParseError as exc:
        return Attempt(error_kind="protocol", error=f"not TLS: {exc}"[:200])
    except TimeoutError:
        if parser.flight.server_hello is None and parser.flight.alert is None:
            return Attempt(error_kind="timeout", error=f"no answer within {timeout:g} s")
    except (ConnectionResetError, BrokenPipeError):
        pass  # many servers reset on a hello they refuse
    except OSError as exc:
        return Attempt(error_kind="connect", error=f"connection failed: {exc.strerror or exc}"[:200])
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    flight = parser.flight
    if flight.server_hello is None and flight.alert is None:
        return Attempt(rejected=True)
    return Attempt(flight=flight)


def _version_facts(attempts: dict[TlsVersion, Attempt]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    offered: list[str] = []
    unknown: list[str] = []
    for version, attempt in attempts.items():
        verdict = attempt.offered(version)
        out[_OFFER_FIELDS[version]] = verdict
        if verdict:
            offered.append(version.label)
        elif verdict is None:
            unknown.append(version.label)
    out["tls.versions_offered"] = offered
    out["tls.versions_unknown"] = unknown
    legacy = [v.label for v in LEGACY_VERSIONS if attempts[v].offered(v)]
    out["tls.legacy_versions_offered"] = legacy
    out["tls.alerts"] = {
        v.label: a.flight.alert.name for v, a in attempts.items() if a.flight is not None and a.flight.alert is not None
    }
    return out


def _preference_facts(attempts: dict[TlsVersion, Attempt], offered: list[TlsVersion]) -> dict[str, Any]:
    """The suite a modern client gets (highest version), and the one a TLS <= 1.2 client gets."""
    out: dict[str, Any] = {}
    if offered:
        top = offered[-1]
        code = attempts[top].suite()
        suite = SUITES.get(code) if code is not None else None
        out["tls.preferred_version"] = top.label
        out["tls.preferred_suite"] = suite_name(code) if code is not None else None
        # a TLS 1.3 HelloRetryRequest names no final suite, but 1.3 is forward secret whatever it picks
        out["tls.forward_secrecy"] = True if top == TlsVersion.TLS1_3 else (suite.forward_secret if suite else None)
    legacy = [v for v in offered if v != TlsVersion.TLS1_3]
    if legacy:
        code = attempts[legacy[-1]].suite()
        suite = SUITES.get(code) if code is not None else None
        out["tls.legacy_suite"] = suite_name(code) if code is not None else None
        out["tls.legacy_forward_secrecy"] = suite.forward_secret if suite else None
    return out


async def _weak_suite_facts(
    exchange: _Exchanger, attempts: dict[TlsVersion, Attempt], legacy_offered: list[TlsVersion]
) -> dict[str, Any]:
    """Offer each weak family alone at the highest pre-1.3 version (EXPORT at TLS 1.0 or lower)."""
    if not legacy_offered:
        unknown = any(attempts[v].offered(v) is None for v in TlsVersion if v != TlsVersion.TLS1_3)
        # TLS 1.3 has no weak suites; if older versions could not be checked, neither could suites
        return {"tls.weak_suites": None if unknown else [], "tls.weak_families": None if unknown else []}
    accepted: set[int] = set()
    unknown_families: list[str] = []
    truncated: list[str] = []
    for version in legacy_offered:  # a weak suite the server prefers anyway
        code = attempts[version].suite()
        if code is not None and code in SUITES and SUITES[code].weak:
            accepted.add(code)

    async def family_sweep(family: WeakFamily) -> None:
        version = legacy_offered[-1]
        if family == WeakFamily.EXPORT and legacy_offered[0] <= TlsVersion.TLS1_0:
            version = min(legacy_offered[-1], TlsVersion.TLS1_0)
        remaining = [c for c in suites_in(family) if c not in accepted]
        for _ in range(MAX_PER_FAMILY):
            if not remaining:
                return
            attempt = await exchange.hello(version, remaining)
            if attempt.error_kind is not None:
                unknown_families.append(family.value)
                return
            code = attempt.suite()
            if code is None or code not in remaining:
                return
            accepted.add(code)
            remaining.remove(code)
        if remaining:
            truncated.append(family.value)  # still accepting when the per-family cap ran out

    await asyncio.gather(*(family_sweep(f) for f in WeakFamily))
    # "none accepted" is a fact only if every family was checked
    known = bool(accepted) or not unknown_families
    return {
        "tls.weak_suites": [suite_name(c) for c in sorted(accepted)] if known else None,
        "tls.weak_families": sorted({f.value for c in accepted for f in SUITES[c].families}) if known else None,
        "tls.weak_families_unknown": sorted(unknown_families),
        "tls.weak_families_truncated": sorted(truncated),
    }
