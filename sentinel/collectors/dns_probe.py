"""DNS view of each registered name: answers per resolver, IPv6 readiness, CAA, and SPF/DMARC for mail domains.

Questions go to the resolvers in `collectors.dns.resolvers` (default: the `nameserver` lines of
/etc/resolv.conf) through `ScopedNetwork.udp_exchange`, with a TCP retry for truncated answers.
**A resolver address must be inside the registry scope** (add e.g. `114.114.114.114/32` to
`scope.allow`): an operator who lists a public resolver therefore says so twice, and a resolver
outside the scope yields an `out_of_scope` error observation instead of a packet.

Only resolvers are contacted; the probed names are never sent a packet by this probe.
"""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.network import OutOfScope, ScopedNetwork
from sentinel.collectors.protocols import ProtocolError
from sentinel.collectors.protocols.dnsmsg import (
    Answer,
    build_query,
    caa_candidates,
    mail_domain,
    parse_answer,
    read_dmarc,
    read_spf,
)
from sentinel.collectors.service_common import close_stream, read_until
from sentinel.config.settings import CollectorSettings, ProbeOptions
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import System, is_ip
from sentinel.registry.scope import Scope

RESOLV_CONF = Path("/etc/resolv.conf")
MAIL_PORTS = frozenset({25, 465, 587})
MAX_RESOLVERS = 8


def system_resolvers(path: Path = RESOLV_CONF) -> list[str]:
    """`nameserver` addresses of resolv.conf (zone ids stripped); empty if the file is unreadable."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            address = parts[1].split("%", 1)[0]
            if is_ip(address):
                out.append(address)
    return out


def is_mail_system(system: System) -> bool:
    return (
        "mail" in system.tags
        or any((e.name or "").lower() == "mail" for e in system.endpoints)
        or any(MAIL_PORTS & set(e.declared_ports) for e in system.endpoints)
    )


class DnsOptions(ProbeOptions):
    """`collectors.dns`."""

    resolvers: list[str] = Field(
        default_factory=list,
        description="resolvers the dns probe asks; each must be inside the registry scope; "
        "empty: the nameservers of /etc/resolv.conf",
    )

    @field_validator("resolvers")
    @classmethod
    def _resolver_addresses(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not is_ip(v)]
        if bad:
            raise ValueError(f"not IP addresses: {', '.join(bad)}")
        return values


class DnsProbe(Probe):
    name = "dns"
    kind = "dns"
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "dns": frozenset(
            {"name", "error_kind", "resolvers", "resolvers_answered", "resolvers_failed", "resolvers_disagree"}
            | {"rcode", "resolves", "answers", "a", "aaaa", "cnames", "answers_by_resolver", "aaaa_present"}
            | {"registered_addresses", "unexpected_addresses", "answers_unexpected", "resolve_ms", "resolve_ms_max"}
            | {"method", "caa.present", "caa.owner", "caa.records", "mail.domain", "spf.present", "spf.record"}
            | {"spf.all", "spf.count", "dmarc.present", "dmarc.record", "dmarc.policy", "dmarc.enforced"}
        )
    }
    Options = DnsOptions
    legacy_keys: ClassVar[Mapping[str, str]] = {"dns_resolvers": "resolvers"}

    def __init__(self, settings: CollectorSettings, resolvers: list[str] | None = None) -> None:
        super().__init__(settings)
        self._resolvers = resolvers

    def plan(self, system: System) -> Iterable[ProbeJob]:
        registered = sorted({str(ipaddress.ip_address(e.hostname)) for e in system.endpoints if is_ip(e.hostname)})
        mail = is_mail_system(system)
        names = dict.fromkeys(e.hostname for e in system.endpoints if not is_ip(e.hostname))
        for name in names:
            extra = (("mail", "1" if mail else "0"), *(("registered", a) for a in registered))
            yield ProbeJob(self.name, system.id, name, name, extra=extra)

    def budget(self, job: ProbeJob) -> int:
        return 2 * len(self.resolvers()) + 6

    def resolvers(self) -> list[str]:
        configured = (
            self._resolvers or self.settings.probe_options(self.name, DnsOptions).resolvers or system_resolvers()
        )
        return list(dict.fromkeys(str(r) for r in configured))[:MAX_RESOLVERS]

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        resolvers = self.resolvers()
        if not resolvers:
            return [
                self._error(job, "internal", "no DNS resolver configured (collectors.dns.resolvers) or in resolv.conf")
            ]
        in_scope = [r for r in resolvers if net.scope.allows_address(r)]
        outside = [r for r in resolvers if r not in in_scope]
        if not in_scope:
            raise OutOfScope(
                f"resolver(s) {', '.join(outside)} outside the declared scope; add them to scope.allow to query them"
            )
        per_resolver = await asyncio.gather(*(self._addresses(net, r, job.host) for r in in_scope))
        answered = {r: res for r, res in zip(in_scope, per_resolver, strict=True) if not isinstance(res, str)}
        failed = {r: res for r, res in zip(in_scope, per_resolver, strict=True) if isinstance(res, str)}
        failed.update({r: "outside the declared scope" for r in outside})
        if not answered:
            kind = _failure_kind(failed.values())
            detail = "; ".join(f"{r}: {v}" for r, v in failed.items())
            return [self._error(job, kind, f"no resolver answered for {job.host}: {detail}"[:300])]
        primary = next(iter(answered))
        data = self._address_facts(job, answered, failed, net.scope)
        data.update(await self._caa(net, primary, job.host))
        if dict(job.extra).get("mail") == "1":
            data.update(await self._mail(net, primary, job.host))
        return [self._obs(job, data)]

    # -- per-resolver address answers ---------------------------------------------------------
    async def _addresses(self, net: ScopedNetwork, resolver: str, name: str) -> dict[str, Any] | str:
        """{rcode, a, aaaa, ms} from one resolver, or the reason it failed."""
        try:
            a, ms = await self._ask_timed(net, resolver, name, "A")
            aaaa = await self._ask(net, resolver, name, "AAAA")
        except TimeoutError:
            return "timed out"
        except ProtocolError as exc:
            return f"protocol: {exc}"[:160]
        except OSError as exc:
            return str(exc)[:160] or type(exc).__name__
        return {"rcode": a.rcode, "a": list(a.records), "aaaa": list(aaaa.records), "cnames": list(a.cnames), "ms": ms}

    def _address_facts(
        self, job: ProbeJob, answered: dict[str, dict[str, Any]], failed: dict[str, str], scope: Scope
    ) -> dict[str, Any]:
        primary = next(iter(answered.values()))
        registered = [v for k, v in job.extra if k == "registered"]
        sets = {r: sorted({*res["a"], *res["aaaa"]}) for r, res in answered.items()}
        every = sorted({a for s in sets.values() for a in s})
        # An answer is expected when it is a registered address of the system or lies inside the scope.
        unexpected = [a for a in every if a not in registered and not scope.allows_address(a)]
        resolves = bool(every)
        data: dict[str, Any] = {
            "name": job.host,
            "resolvers": list(answered) + list(failed),
            "resolvers_answered": len(answered),
            "resolvers_failed": failed,
            "rcode": primary["rcode"],
            "resolves": resolves,
            "answers": sorted({*primary["a"], *primary["aaaa"]}),
            "a": primary["a"],
            "aaaa": primary["aaaa"],
            "cnames": primary["cnames"],
            "answers_by_resolver": {r: s if s else answered[r]["rcode"] for r, s in sets.items()},
            "registered_addresses": registered,
            "unexpected_addresses": unexpected,
            "answers_unexpected": bool(unexpected),
            "resolve_ms": round(primary["ms"], 2),
            "resolve_ms_max": round(max(res["ms"] for res in answered.values()), 2),
            "method": "dns-query",
        }
        if len(answered) >= 2:
            distinct = {tuple(s) if s else answered[r]["rcode"] for r, s in sets.items()}
            data["resolvers_disagree"] = len(distinct) > 1
        if resolves:
            data["aaaa_present"] = any(res["aaaa"] for res in answered.values())
        return data

    # -- CAA and mail records (asked of the first resolver that answered) -----------------------
    async def _caa(self, net: ScopedNetwork, resolver: str, name: str) -> dict[str, Any]:
        for owner in caa_candidates(name):
            try:
                answer = await self._ask(net, resolver, owner, "CAA")
            except (OSError, TimeoutError, ProtocolError):
                return {}  # unknown, not "missing"
            if answer.records:
                return {"caa.present": True, "caa.owner": owner, "caa.records": list(answer.records)}
        return {"caa.present": False, "caa.owner": None}

    async def _mail(self, net: ScopedNetwork, resolver: str, name: str) -> dict[str, Any]:
        domain = mail_domain(name)
        data: dict[str, Any] = {"mail.domain": domain}
        try:
            spf = read_spf((await self._ask(net, resolver, domain, "TXT")).records)
            data.update({"spf.present": spf.present, "spf.record": spf.record, "spf.all": spf.all})
            if spf.count > 1:
                data["spf.count"] = spf.count
        except (OSError, TimeoutError, ProtocolError):
            pass
        try:
            dmarc = read_dmarc((await self._ask(net, resolver, f"_dmarc.{domain}", "TXT")).records)
            data.update(
                {
                    "dmarc.present": dmarc.present,
                    "dmarc.record": dmarc.record,
                    "dmarc.policy": dmarc.policy,
                    "dmarc.enforced": dmarc.policy in ("quarantine", "reject"),
                }
            )
        except (OSError, TimeoutError, ProtocolError):
            pass
        return data

    # -- transport ------------------------------------------------------------------------------
    async def _ask(self, net: ScopedNetwork, resolver: str, name: str, rdtype: str) -> Answer:
        return (await self._ask_timed(net, resolver, name, rdtype))[0]

    async def _ask_timed(self, net: ScopedNetwork, resolver: str, name: str, rdtype: str) -> tuple[Answer, float]:
        """One question over UDP (retried on silence), again over TCP if the answer was truncated; with the
        milliseconds the answering exchange took, measured after admission (never the rate limiter's wait)."""
        query = build_query(name, rdtype)
        wire = query.to_wire()
        for attempt in range(1 + self.settings.retries):
            try:
                raw, ms = await net.udp_exchange_timed(resolver, 53, wire, self.settings.connect_timeout)
                break
            except TimeoutError:
                if attempt == self.settings.retries:
                    raise
        answer = parse_answer(query, raw, rdtype)
        if answer.truncated:
            raw, tcp_ms = await self._tcp(net, resolver, wire)
            answer, ms = parse_answer(query, raw, rdtype), ms + tcp_ms
        return answer, ms

    async def _tcp(self, net: ScopedNetwork, resolver: str, wire: bytes) -> tuple[bytes, float]:
        """The answer over TCP, and the ms from sending the question (on the admitted stream) to the answer."""
        reader, writer = await net.open_stream(resolver, 53)
        t0 = time.perf_counter()
        try:
            writer.write(struct.pack("!H", len(wire)) + wire)
            await asyncio.wait_for(writer.drain(), self.settings.connect_timeout)

            def complete(raw: bytes) -> bool:
                return len(raw) >= 2 and len(raw) >= 2 + struct.unpack("!H", raw[:2])[0]

            raw = await read_until(reader, complete, self.settings.connect_timeout, limit=65_537)
        finally:
            await close_stream(writer)
        ms = (time.perf_counter() - t0) * 1000
        if not complete(raw):
            raise ProtocolError("truncated DNS answer over TCP")
        return raw[2 : 2 + struct.unpack("!H", raw[:2])[0]], ms

    # -- observations ---------------------------------------------------------------------------
    def _obs(self, job: ProbeJob, data: dict[str, Any], error: str | None = None) -> Observation:
        return Observation(
            kind=self.kind,
            system_id=job.system_id,
            target=job.target,
            observed_at=datetime.now(UTC),
            probe=self.name,
            status=ObservationStatus.ERROR if error else ObservationStatus.OK,
            data=data,
            error=error,
        )

    def _error(self, job: ProbeJob, kind: str, reason: str) -> Observation:
        return self._obs(job, {"name": job.host, "error_kind": kind}, error=reason)


def _failure_kind(reasons: Iterable[str]) -> str:
    """`timeout` when every resolver was silent, `protocol` when every answer was broken, else `dns`."""
    listed = list(reasons)
    if all(r == "timed out" for r in listed):
        return "timeout"
    if all(r.startswith("protocol: ") for r in listed):
        return "protocol"
    return "dns"
