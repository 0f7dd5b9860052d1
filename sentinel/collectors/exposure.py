"""Unauthenticated exposure: do data stores and control APIs answer read-only questions without a login?

Safe checks only, one short conversation per port, nothing written and no credentials tried:
Redis `PING` then `INFO server`; Memcached `version` then `stats`; MongoDB `hello`, `buildInfo`
and `listDatabases` (names only, which needs authentication when access control is on);
Elasticsearch `GET /`; Docker Engine `GET /version`; FTP `USER anonymous` (the one accepted
login: anonymous FTP is public by design, so trying it is not a credential guess).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.http_fetch import scoped_get
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.protocols import ProtocolError, kv, mongo
from sentinel.collectors.protocols.greeting import printable, reply_code, reply_complete
from sentinel.collectors.service_common import (
    SERVICE_LEGACY_KEYS,
    ServiceOptions,
    close_stream,
    connect_error_kind,
    plan_service_jobs,
    read_until,
    service_observation,
)
from sentinel.collectors.vulnerable_versions import Catalogue, load_catalogue
from sentinel.config.settings import CollectorSettings
from sentinel.models import Observation
from sentinel.models.target import host_port
from sentinel.registry.models import System

SERVICE_BY_PORT = {
    21: "ftp",
    2375: "docker",
    6379: "redis",
    9200: "elasticsearch",
    11211: "memcached",
    27017: "mongodb",
}
#: the anonymous-FTP password convention (RFC 1635): an address-like token, not a secret
ANONYMOUS_PASSWORD = b"sentinel@"
_MAX_JSON = 65_536
#: extra seconds allowed for the answer to a refused login
LOGIN_DELAY = 5.0

Facts = dict[str, Any]
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class ExposureProbe(Probe):
    name = "exposure"
    kind = "exposure"
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "exposure": frozenset(
            {"host", "port", "protocol", "declared", "address", "service", "method", "reachable", "error_kind"}
            | {"unauthenticated", "auth_required", "product", "version", "vulnerable", "vulnerable_count", "cves"}
            | {"redis.ping", "redis.info", "redis.mode", "redis.os", "memcached.reply", "memcached.stats"}
            | {f"memcached.{k}" for k in kv.MEMCACHED_STAT_KEYS}
            | {"mongodb.max_wire_version", "mongodb.set_name", "mongodb.database_count", "ftp.anonymous"}
            | {"ftp.reply", "http.status", "elasticsearch.cluster_name", "elasticsearch.node_name"}
            | {"docker.api_version", "docker.os", "docker.kernel"}
        )
    }
    Options = ServiceOptions
    legacy_keys = SERVICE_LEGACY_KEYS

    def __init__(self, settings: CollectorSettings, catalogue: Catalogue | None = None) -> None:
        super().__init__(settings)
        self.catalogue = catalogue or load_catalogue(self.options.vulnerable_versions)
        self._request_ids = itertools.count(1)

    @property
    def options(self) -> ServiceOptions:
        return self.settings.probe_options(self.name, ServiceOptions)

    def plan(self, system: System) -> Iterable[ProbeJob]:
        return plan_service_jobs(self.name, system, SERVICE_BY_PORT, self.options.high_risk_ports)

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        address = (await net.resolve(job.host))[0]
        return list(await asyncio.gather(*(self._check(job, net, address, port) for port in job.ports)))

    async def _check(self, job: ProbeJob, net: ScopedNetwork, address: str, port: int) -> Observation:
        service = SERVICE_BY_PORT[port]
        checks: dict[str, Callable[[ScopedNetwork, str, str, int], Awaitable[Facts]]] = {
            "ftp": self._ftp,
            "docker": self._docker,
            "elasticsearch": self._elasticsearch,
            "redis": self._redis,
            "memcached": self._memcached,
            "mongodb": self._mongodb,
        }
        base: Facts = {"address": address, "service": service, "method": "safe-check"}
        label = host_port(job.host, port)
        import aiohttp  # imported when a probe runs: the settings import this module only for its Options

        try:
            facts = await checks[service](net, address, job.host, port)
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            kind = connect_error_kind(exc)
            if kind == "refused" or _refused(exc):  # nothing listens: nothing is exposed, no version runs
                closed = {**base, "reachable": False, "unauthenticated": False}
                if service != "ftp":
                    closed.update(vulnerable=[], vulnerable_count=0, cves=[])
                return service_observation(self.kind, self.name, job, port, closed)
            reason = "timed out" if kind == "timeout" else (str(exc) or type(exc).__name__)[:200]
            return service_observation(
                self.kind, self.name, job, port, {**base, "error_kind": kind}, error=f"{label}: {reason}"
            )
        except ProtocolError as exc:
            return service_observation(
                self.kind,
                self.name,
                job,
                port,
                {**base, "error_kind": "protocol"},
                error=f"{label}: unexpected {service} answer: {exc}"[:300],
            )
        data = {**base, "reachable": True, **facts}
        # Only a known version can be judged (unknown stays unknown); FTP versions come from the banner probe.
        if service != "ftp" and data.get("version"):
            vulnerable = self.catalogue.match(data.get("product"), data.get("version"))
            data.update(
                vulnerable=vulnerable,
                vulnerable_count=len(vulnerable),
                cves=sorted({cve for hit in vulnerable for cve in hit["cves"]}),
            )
        return service_observation(self.kind, self.name, job, port, data)

    # -- line protocols -----------------------------------------------------------------------
    async def _exchange(
        self, stream: Stream, payload: bytes, done: Callable[[bytes], bool], timeout: float | None = None
    ) -> bytes:
        reader, writer = stream
        writer.write(payload)
        await asyncio.wait_for(writer.drain(), self.settings.connect_timeout)
        answer = await read_until(reader, done, timeout or self.settings.connect_timeout)
        if not answer:
            raise ProtocolError("no answer")
        return answer

    async def _redis(self, net: ScopedNetwork, address: str, host: str, port: int) -> Facts:
        stream = await net.open_stream(address, port)
        try:
            ping = kv.parse_redis_reply(await self._exchange(stream, kv.REDIS_PING, kv.redis_line_complete))
            facts: Facts = {"product": "redis", "redis.ping": f"{'-' if ping.kind == 'error' else '+'}{ping.text}"}
            if ping.kind == "error":
                # NOAUTH (requirepass/ACL) or DENIED (protected mode): either way a login is required
                facts.update(unauthenticated=False, auth_required=ping.text.split(" ", 1)[0][:32])
                return facts
            if ping.text != "PONG":
                raise ProtocolError(f"PING answered {ping.text[:40]!r}")
            info = kv.parse_redis_reply(await self._exchange(stream, kv.REDIS_INFO, kv.redis_bulk_complete))
            fields = kv.parse_redis_info(info.text) if info.kind == "bulk" else {}
            facts.update(
                {
                    "unauthenticated": True,
                    "redis.info": info.kind == "bulk",
                    "version": fields.get("redis_version"),
                    "redis.mode": fields.get("redis_mode"),
                    "redis.os": fields.get("os"),
                }
            )
            return facts
        finally:
            await close_stream(stream[1], b"QUIT\r\n")

    async def _memcached(self, net: ScopedNetwork, address: str, host: str, port: int) -> Facts:
        stream = await net.open_stream(address, port)
        try:
            answer = await self._exchange(stream, kv.MEMCACHED_VERSION, kv.memcached_line_complete)
            version = kv.parse_memcached_version(answer)
            if version is None:
                # SASL/ASCII-auth servers refuse commands before a login
                return {"product": "memcached", "unauthenticated": False, "memcached.reply": printable(answer, 80)}
            stats = kv.parse_memcached_stats(
                await self._exchange(stream, kv.MEMCACHED_STATS, kv.memcached_stats_complete)
            )
            return {
                "product": "memcached",
                "version": version,
                "unauthenticated": True,
                "memcached.stats": bool(stats),
                **{f"memcached.{k}": v for k, v in stats.items()},
            }
        finally:
            await close_stream(stream[1], b"quit\r\n")

    async def _mongodb(self, net: ScopedNetwork, address: str, host: str, port: int) -> Facts:
        stream = await net.open_stream(address, port)
        try:
            hello = await self._command(stream, {"hello": 1, "$db": "admin"})
            build = await self._command(stream, {"buildInfo": 1, "$db": "admin"})
            listing = await self._command(stream, {"listDatabases": 1, "nameOnly": 1, "$db": "admin"})
        finally:
            await close_stream(stream[1])
        databases = listing.get("databases")
        open_listing = listing.get("ok") == 1 and isinstance(databases, list)
        return {
            "product": "mongodb",
            "version": str(build["version"])[:32] if isinstance(build.get("version"), str) else None,
            "unauthenticated": open_listing,
            "mongodb.max_wire_version": hello.get("maxWireVersion"),
            "mongodb.set_name": str(hello["setName"])[:64] if "setName" in hello else None,
            "mongodb.database_count": len(databases) if open_listing and isinstance(databases, list) else None,
            "auth_required": None if open_listing else str(listing.get("codeName") or listing.get("errmsg", ""))[:64],
        }

    async def _command(self, stream: Stream, command: dict[str, int | str]) -> dict[str, Any]:
        request_id = next(self._request_ids) & 0x7FFFFFFF
        raw = await self._exchange(stream, mongo.op_msg(request_id, command), mongo.message_complete)
        return mongo.parse_op_msg_reply(raw, request_id)

    async def _ftp(self, net: ScopedNetwork, address: str, host: str, port: int) -> Facts:
        stream = await net.open_stream(address, port)
        reader, writer = stream

        def reply_done(raw: bytes) -> bool:
            return raw.endswith(b"\n") and reply_complete(raw)

        try:
            greeting = await read_until(reader, reply_done, self.settings.connect_timeout)
            if reply_code(greeting) != 220:
                raise ProtocolError(f"greeting is not 220: {printable(greeting, 80)!r}")
            user = await self._exchange(stream, b"USER anonymous\r\n", reply_done)
            code = reply_code(user)
            if code == 331:
                # servers delay a refused login on purpose (PAM pam_faildelay, vsftpd delay_failed_login)
                answer = await self._exchange(
                    stream,
                    b"PASS " + ANONYMOUS_PASSWORD + b"\r\n",
                    reply_done,
                    self.settings.connect_timeout + LOGIN_DELAY,
                )
                code = reply_code(answer)
                user = answer
            if code is None or not (code == 230 or 500 <= code < 600):
                raise ProtocolError(f"anonymous login answered {printable(user, 80)!r}")
            return {"unauthenticated": code == 230, "ftp.anonymous": code == 230, "ftp.reply": printable(user, 120)}
        finally:
            await close_stream(writer, b"QUIT\r\n")

    # -- HTTP APIs ------------------------------------------------------------------------------
    async def _get_json(self, net: ScopedNetwork, address: str, port: int, path: str) -> tuple[int, Any]:
        import aiohttp  # imported when a probe runs: the settings import this module only for its Options

        host = f"[{address}]" if ":" in address else address
        timeout = aiohttp.ClientTimeout(total=self.settings.http_timeout, sock_connect=self.settings.connect_timeout)
        # The HTTP probes' client (one admitted, scope-checked connection; no redirects followed), which costs a
        # fraction of an aiohttp session request: two of these per host in every sweep.
        page = await scoped_get(net, f"http://{host}:{port}{path}", max_bytes=_MAX_JSON, timeout=timeout)
        try:
            return page.status, json.loads(page.body)
        except (ValueError, UnicodeDecodeError):
            return page.status, None

    async def _elasticsearch(self, net: ScopedNetwork, address: str, host: str, port: int) -> Facts:
        status, doc = await self._get_json(net, address, port, "/")
        if status in (401, 403):
            return {"product": "elasticsearch", "unauthenticated": False, "http.status": status}
        if status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("version"), dict):
            raise ProtocolError(f"GET / gave HTTP {status} without an Elasticsearch banner")
        version = doc["version"]
        distribution = str(version.get("distribution") or "elasticsearch")[:32]
        return {
            "product": distribution,
            "version": str(version.get("number"))[:32] if version.get("number") else None,
            "unauthenticated": True,
            "http.status": status,
            "elasticsearch.cluster_name": str(doc.get("cluster_name", ""))[:128],
            "elasticsearch.node_name": str(doc.get("name", ""))[:128],
        }

    async def _docker(self, net: ScopedNetwork, address: str, host: str, port: int) -> Facts:
        status, doc = await self._get_json(net, address, port, "/version")
        if status in (401, 403):
            return {"product": "docker", "unauthenticated": False, "http.status": status}
        if status != 200 or not isinstance(doc, dict) or "ApiVersion" not in doc:
            raise ProtocolError(f"GET /version gave HTTP {status} without a Docker Engine answer")
        return {
            "product": "docker",
            "version": str(doc.get("Version"))[:32] if doc.get("Version") else None,
            "unauthenticated": True,
            "http.status": status,
            "docker.api_version": str(doc["ApiVersion"])[:16],
            "docker.os": str(doc.get("Os", ""))[:32],
            "docker.kernel": str(doc.get("KernelVersion", ""))[:64],
        }


def _refused(exc: BaseException) -> bool:
    """aiohttp wraps a refused connection in ClientConnectorError; see through it."""
    cause = getattr(exc, "os_error", None) or exc.__cause__
    return isinstance(cause, ConnectionRefusedError)
