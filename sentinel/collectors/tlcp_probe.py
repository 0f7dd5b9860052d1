"""国密 TLS: does an endpoint offer TLCP (GM/T 0024, version 0x0101) or the TLS 1.3 SM suites (RFC 8998),
and what do its SM2 signing and encryption certificates say.

Two hellos go out at once: a TLCP ClientHello offering the four SM2/SM4/SM3 suites (no extensions),
and a TLS 1.3 ClientHello offering only TLS_SM4_GCM_SM3 / TLS_SM4_CCM_SM3 with a curveSM2 key share
and sm2sig_sm3. Support is claimed only from a well-formed ServerHello of the right version that picks
a suite the hello offered; anything else (an alert, a TLS 1.x answer, a close, bytes that are not
TLS) is "not offered" or, when the bytes were not TLS at all or never came, "could not tell". Each
accepted suite is then dropped from the next offer to list the others (at most MAX_CONNECTIONS per
endpoint). The TLCP Certificate message is in the clear: the first certificate is the signing one,
the second the encryption one (GM/T 0024-2014 6.4.5.3); TLS 1.3 certificates are encrypted and
not read.

Observation `gm_tls`, target `host:port` (None means "could not tell"):
  gm.supported, gm.protocols (["TLCP", "TLSv1.3"] subset), gm.suites;
  tlcp.offered, tlcp.answer, tlcp.suites, tlcp.preferred_suite, tlcp.ecdhe;
  tls13_sm.offered, tls13_sm.answer, tls13_sm.suites, tls13_sm.group, tls13_sm.curve_sm2, tls13_sm.hello_retry;
  tlcp.certificates_sent, tlcp.double_certificate, tlcp.cert_min_days_to_expiry, tlcp.certs_sm2;
  tlcp.sign_cert.* and tlcp.enc_cert.*: subject, issuer, serial, not_before, not_after, days_to_expiry,
  not_yet_valid, key_usage, ca, self_signed, sha256, signature_algorithm, key_type, curve (parse_error);
  scan.connections, scan.errors.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.tls_cert import TlsProbe
from sentinel.collectors.tls_scan import Attempt, exchange_hello
from sentinel.collectors.tlswire import ServerFlightParser, TlsVersion, build_client_hello
from sentinel.collectors.tlswire.gm import (
    GROUP_CURVE_SM2,
    TLCP_SUITES,
    TLCP_VERSION,
    TLS13_SM_SUITES,
    build_tlcp_client_hello,
    gm_suite_name,
    group_name,
    selected_group,
    sm2_key_share,
    tls13_sm_hello_spec,
)
from sentinel.collectors.tlswire.records import Extension
from sentinel.models import Observation
from sentinel.registry.models import System, is_ip

#: one hello per suite at most, for each protocol
MAX_CONNECTIONS = len(TLCP_SUITES) + len(TLS13_SM_SUITES)
_TRANSPORT_ERRORS = frozenset({"refused", "timeout", "connect", "circuit_open", "budget"})


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """What one protocol's sweep showed."""

    offered: bool | None
    answer: str
    suites: tuple[int, ...] = ()
    first: Attempt | None = None  # the attempt that accepted first (its flight carries the certificates)


def _answer(attempt: Attempt) -> str:
    """A short word on what the server did with a hello (for the observation and for debugging)."""
    if attempt.error_kind is not None:
        return "not_tls" if attempt.error_kind == "protocol" else attempt.error_kind
    if attempt.rejected or attempt.flight is None:
        return "closed"
    if attempt.flight.alert is not None:
        return f"alert:{attempt.flight.alert.name}"
    hello = attempt.flight.server_hello
    assert hello is not None  # a flight without an alert has a ServerHello
    return f"server_hello:0x{hello.version:04X}"


class _Sweeper:
    def __init__(self, net: ScopedNetwork, address: str, port: int, sni: str | None, timeout: float) -> None:
        self.net, self.address, self.port, self.sni, self.timeout = net, address, port, sni, timeout
        self.connections = 0
        self.errors: list[str] = []
        self._sm2_share = sm2_key_share()

    async def _send(self, label: str, payload: bytes) -> Attempt:
        if self.connections >= MAX_CONNECTIONS:
            return Attempt(error_kind="budget", error="connection budget for this endpoint is spent")
        self.connections += 1
        # both hellos accept 0x0101 records: a TLCP-only server refuses TLS 1.3 with a TLCP alert
        parser = ServerFlightParser(tlcp=True)
        attempt = await exchange_hello(self.net, self.address, self.port, payload, self.timeout, parser)
        if attempt.error:
            self.errors.append(f"{label}: {attempt.error}"[:200])
        return attempt

    async def tlcp(self, suites: Sequence[int]) -> Attempt:
        return await self._send("TLCP", build_tlcp_client_hello(suites))

    async def tls13(self, suites: Sequence[int]) -> Attempt:
        spec = tls13_sm_hello_spec(suites, self.sni, self._sm2_share, None)
        return await self._send("TLSv1.3 SM", build_client_hello(spec))


def _accepted_tlcp(attempt: Attempt, offered: Sequence[int]) -> int | None:
    hello = attempt.flight.server_hello if attempt.flight else None
    if hello is None or hello.legacy_version != TLCP_VERSION or hello.cipher_suite not in offered:
        return None
    return hello.cipher_suite


def _accepted_tls13(attempt: Attempt, offered: Sequence[int]) -> int | None:
    hello = attempt.flight.server_hello if attempt.flight else None
    if hello is None or hello.version != TlsVersion.TLS1_3 or hello.cipher_suite not in offered:
        return None
    return hello.cipher_suite


async def _sweep(
    send: Callable[[Sequence[int]], Awaitable[Attempt]],
    accepted: Callable[[Attempt, Sequence[int]], int | None],
    suites: Sequence[int],
    first: Attempt,
) -> tuple[Verdict, list[Attempt]]:
    """Offer `suites`, drop the one accepted, offer the rest, until a refusal or nothing is left."""
    remaining = list(suites)
    attempts: list[Attempt] = []
    found: list[int] = []
    winner: Attempt | None = None
    while remaining:
        attempt = first if not attempts else await send(remaining)
        attempts.append(attempt)
        code = accepted(attempt, remaining)
        if code is None:
            break
        found.append(code)
        winner = winner or attempt
        remaining.remove(code)
    opening = attempts[0]
    if found:
        return Verdict(True, _answer(opening), tuple(found), winner), attempts
    if opening.error_kind is not None:
        # bytes that are not TLS, a timeout, a refused connection: nothing is known about SM support
        return Verdict(None, _answer(opening)), attempts
    return Verdict(False, _answer(opening)), attempts


class GmTlsProbe(Probe):
    name = "gm_tls"
    kind = "gm_tls"
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "gm_tls": frozenset(
            {"host", "address", "port", "error_kind", "scan.connections", "scan.errors", "gm.supported"}
            | {"gm.protocols", "gm.suites", "tlcp.offered", "tlcp.answer", "tlcp.suites", "tlcp.preferred_suite"}
            | {"tlcp.ecdhe", "tls13_sm.offered", "tls13_sm.answer", "tls13_sm.suites", "tls13_sm.group"}
            | {"tls13_sm.curve_sm2", "tls13_sm.hello_retry", "tlcp.certificates_sent", "tlcp.double_certificate"}
            | {"tlcp.cert_min_days_to_expiry", "tlcp.certs_sm2"}
            | {
                f"tlcp.{role}.{fact}"
                for role in ("sign_cert", "enc_cert")
                for fact in (
                    *("subject", "issuer", "serial", "not_before", "not_after", "days_to_expiry", "not_yet_valid"),
                    *("key_usage", "ca", "self_signed", "sha256", "signature_algorithm", "key_type", "curve"),
                    "parse_error",
                )
            }
        )
    }
    #: only when listed in `collectors.probes` (it was never in the default list)
    schedule = "opt_in"

    def plan(self, system: System) -> Iterable[ProbeJob]:
        # the endpoints of the `tls` probe: https URLs and declared TLS ports (TLCP shares 443 behind
        # most 国密 gateways, which pick the protocol from the ClientHello)
        for job in TlsProbe(self.settings).plan(system):
            yield dataclasses.replace(job, probe=self.name)

    def budget(self, job: ProbeJob) -> int:
        return MAX_CONNECTIONS

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        address = (await net.resolve(job.host))[0]
        port = job.ports[0]
        now = datetime.now(UTC)
        sweeper = _Sweeper(net, address, port, None if is_ip(job.host) else job.host, net.settings.tls_timeout)
        tlcp_offer, tls13_offer = list(TLCP_SUITES), list(TLS13_SM_SUITES)
        first_tlcp, first_tls13 = await asyncio.gather(sweeper.tlcp(tlcp_offer), sweeper.tls13(tls13_offer))
        base: dict[str, Any] = {"host": job.host, "address": address, "port": port}
        if first_tlcp.error_kind in _TRANSPORT_ERRORS and first_tls13.error_kind in _TRANSPORT_ERRORS:
            reason = first_tlcp.error or first_tls13.error or "no answer"
            data = {**base, "error_kind": first_tlcp.error_kind, "scan.connections": sweeper.connections}
            return [self.observation(job, now, data, reason)]
        if first_tlcp.error_kind == "protocol" and first_tls13.error_kind == "protocol":
            data = {**base, "error_kind": "protocol", "scan.connections": sweeper.connections}
            return [self.observation(job, now, data, "the service does not speak TLS or TLCP")]

        (tlcp, _), (tls13, tls13_attempts) = await asyncio.gather(
            _sweep(sweeper.tlcp, _accepted_tlcp, tlcp_offer, first_tlcp),
            _sweep(sweeper.tls13, _accepted_tls13, tls13_offer, first_tls13),
        )
        data = {**base, **_summary(tlcp, tls13), **_tlcp_facts(tlcp), **_tls13_facts(tls13, tls13_attempts)}
        if tlcp.first is not None and tlcp.first.flight is not None:
            data.update(
                tlcp_certificate_facts(tlcp.first.flight.certificates, tlcp.first.flight.certificates_total, now)
            )
        data["scan.connections"] = sweeper.connections
        data["scan.errors"] = sweeper.errors[:10]
        return [self.observation(job, now, data)]


def _summary(tlcp: Verdict, tls13: Verdict) -> dict[str, Any]:
    verdicts = (tlcp.offered, tls13.offered)
    supported = True if True in verdicts else (None if None in verdicts else False)
    protocols = [name for name, v in (("TLCP", tlcp), ("TLSv1.3", tls13)) if v.offered]
    return {
        "gm.supported": supported,
        "gm.protocols": protocols,
        "gm.suites": [gm_suite_name(c) for c in (*tlcp.suites, *tls13.suites)],
    }


def _tlcp_facts(tlcp: Verdict) -> dict[str, Any]:
    names = [TLCP_SUITES[c] for c in tlcp.suites]
    return {
        "tlcp.offered": tlcp.offered,
        "tlcp.answer": tlcp.answer,
        "tlcp.suites": names if tlcp.offered is not None else None,
        "tlcp.preferred_suite": names[0] if names else None,
        "tlcp.ecdhe": any(n.startswith("ECDHE_") for n in names) if tlcp.offered else None,
    }


def _tls13_facts(tls13: Verdict, attempts: list[Attempt]) -> dict[str, Any]:
    hello = tls13.first.flight.server_hello if tls13.first and tls13.first.flight else None
    group = selected_group(hello.extensions.get(Extension.KEY_SHARE)) if hello is not None else None
    return {
        "tls13_sm.offered": tls13.offered,
        "tls13_sm.answer": tls13.answer,
        "tls13_sm.suites": [TLS13_SM_SUITES[c] for c in tls13.suites] if tls13.offered is not None else None,
        "tls13_sm.group": group_name(group),
        "tls13_sm.curve_sm2": (group == GROUP_CURVE_SM2) if hello is not None else None,
        "tls13_sm.hello_retry": any(
            a.flight is not None and a.flight.server_hello is not None and a.flight.server_hello.is_hello_retry
            for a in attempts
        ),
    }


def tlcp_certificate_facts(ders: Sequence[bytes], total: int, now: datetime) -> dict[str, Any]:
    """The signing (first) and encryption (second) certificates of a TLCP Certificate message."""
    # cryptography, imported when a probe runs: the settings import this module only for its Options
    from sentinel.collectors.tlswire.gmcert import gm_certificate_facts, is_encryption, is_signing

    out: dict[str, Any] = {"tlcp.certificates_sent": total}
    parsed: list[dict[str, Any]] = []
    for role, der in zip(("sign_cert", "enc_cert"), ders, strict=False):
        facts = gm_certificate_facts(der, now)
        parsed.append(facts)
        out.update({f"tlcp.{role}.{k}": v for k, v in facts.items()})
    days = [f["days_to_expiry"] for f in parsed if "days_to_expiry" in f]
    out["tlcp.cert_min_days_to_expiry"] = min(days) if days else None
    out["tlcp.certs_sm2"] = all(f.get("key_type") == "sm2" for f in parsed) if parsed else None
    if len(parsed) < 2:
        out["tlcp.double_certificate"] = False if parsed else None
    else:
        sign, enc = is_signing(parsed[0]), is_encryption(parsed[1])
        distinct = parsed[0].get("sha256") != parsed[1].get("sha256")
        out["tlcp.double_certificate"] = None if sign is None or enc is None else (sign and enc and distinct)
    return out
