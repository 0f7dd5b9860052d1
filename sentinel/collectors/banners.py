"""Service banners: what SSH, FTP, SMTP, POP3, IMAP and Telnet servers say before anyone logs in.

Per host, the well-known service ports among the declared ports and the high-risk list are
connected to once; the greeting is read (bounded in bytes and time), Telnet options are refused
so the login banner arrives, and product/version are matched against the known-vulnerable
catalogue. Nothing is sent beyond Telnet refusals and a protocol goodbye (QUIT / LOGOUT).
Declared web ports get one `HEAD /`, for the product and version in `Server` / `X-Powered-By`.

Only a greeting that parses names a service: bytes of no known protocol are `unidentified` (no
login-service or version claim), and a port that accepts but never speaks is an error observation
(`timeout`, or `protocol` when it hung up: nothing was observed, so rules reading it stay unknown).

Fields: address, reachable, service (ssh, ftp, smtp, pop3, imap, telnet, http, https or `unidentified`),
banner (bounded; for `unidentified` the escaped bytes), banner_bytes, product, version, version_disclosed,
cleartext_login, tls, method, protocol facts (ssh.protocol, ftp.code, telnet.options ...), the catalogue's
vulnerable / vulnerable_count / cves when a version is known; `unidentified` carries expected_service
(the port's usual service) instead of any product, version or login claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.protocols import ProtocolError
from sentinel.collectors.protocols.greeting import (
    CLEARTEXT_LOGIN,
    IMPLICIT_TLS_PORTS,
    SERVICE_BY_PORT,
    UNIDENTIFIED,
    parse_greeting,
    reply_code,
    reply_complete,
    stable_banner,
)
from sentinel.collectors.protocols.http_head import (
    MAX_HEAD_BYTES,
    head_complete,
    head_request,
    parse_head,
    product_version,
)
from sentinel.collectors.protocols.telnet import IAC, TelnetParser
from sentinel.collectors.service_common import (
    SERVICE_LEGACY_KEYS,
    ServiceOptions,
    close_stream,
    connect_error_kind,
    insecure_tls_context,
    plan_service_jobs,
    read_until,
    service_observation,
)
from sentinel.collectors.vulnerable_versions import Catalogue, load_catalogue
from sentinel.config.settings import CollectorSettings
from sentinel.models import Observation
from sentinel.models.target import host_port
from sentinel.registry.models import System

MAX_GREETING_BYTES = 4096
#: after some text has arrived, this much silence ends a Telnet banner (it has no terminator)
IDLE_GAP = 0.5
#: web ports asked `HEAD /` (only when declared: they are not on the high-risk list)
HTTP_PORTS = {80: "http", 8000: "http", 8080: "http", 443: "https", 8443: "https"}
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
_GOODBYE = {"ftp": b"QUIT\r\n", "smtp": b"QUIT\r\n", "pop3": b"QUIT\r\n", "imap": b"a1 LOGOUT\r\n"}


def _greeting_complete(raw: bytes) -> bool:
    """A server-first greeting is over at its first complete line (multi-line FTP/SMTP: the last one)."""
    if raw.startswith(b"SSH-") or raw.startswith(b"+OK") or raw.startswith(b"* "):
        return b"\n" in raw
    if reply_code(raw) is not None:
        return raw.endswith(b"\n") and reply_complete(raw)
    return False


class BannerProbe(Probe):
    name = "banners"
    kind = "banner"
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "banner": frozenset(
            {"host", "port", "protocol", "declared", "address", "service", "error_kind", "reachable", "method"}
            | {"expected_service", "banner", "banner_bytes", "tls", "product", "version", "version_disclosed"}
            | {"cleartext_login", "ssh.protocol", "telnet.options", "smtp.code", "ftp.code", "http.status"}
            | {"powered_by.product", "powered_by.version", "vulnerable", "vulnerable_count", "cves"}
        )
    }
    Options = ServiceOptions
    legacy_keys = SERVICE_LEGACY_KEYS

    def __init__(self, settings: CollectorSettings, catalogue: Catalogue | None = None) -> None:
        super().__init__(settings)
        # Loaded when the probe is built, so a broken catalogue is reported as FILE:LINE before a sweep.
        self.catalogue = catalogue or load_catalogue(self.options.vulnerable_versions)

    @property
    def options(self) -> ServiceOptions:
        return self.settings.probe_options(self.name, ServiceOptions)

    def plan(self, system: System) -> Iterable[ProbeJob]:
        return plan_service_jobs(self.name, system, {*SERVICE_BY_PORT, *HTTP_PORTS}, self.options.high_risk_ports)

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        address = (await net.resolve(job.host))[0]
        return list(await asyncio.gather(*(self._grab(job, net, address, port) for port in job.ports)))

    async def _grab(self, job: ProbeJob, net: ScopedNetwork, address: str, port: int) -> Observation:
        expected = SERVICE_BY_PORT.get(port) or HTTP_PORTS.get(port, "unknown")
        tls = port in IMPLICIT_TLS_PORTS or expected == "https"
        try:
            reader, writer = await net.open_stream(
                address, port, insecure_tls_context() if tls else None, job.host if tls else None
            )
        except (OSError, TimeoutError) as exc:
            kind = connect_error_kind(exc)
            if kind == "refused":  # nothing listens: a definite "no banner, no login service here"
                return self._closed(job, address, port, expected)
            reason = "timed out" if kind == "timeout" else str(exc)[:200]
            return service_observation(
                self.kind,
                self.name,
                job,
                port,
                {"address": address, "service": expected, "error_kind": kind},
                error=f"{host_port(job.host, port)}: {reason}",
            )
        if port in HTTP_PORTS:
            return await self._http_server(job, net, address, port, (reader, writer))
        try:
            raw, telnet, closed = await self._read_greeting(reader, writer)
        except (OSError, TimeoutError) as exc:
            await close_stream(writer)
            return service_observation(
                self.kind,
                self.name,
                job,
                port,
                {"address": address, "service": expected, "error_kind": "protocol"},
                error=f"{host_port(job.host, port)}: connection failed while reading the greeting: {exc}"[:300],
            )
        if not raw:
            # Silence proves nothing (not "no version", not "no login service"): could not observe.
            await close_stream(writer)
            why = "closed the connection" if closed else f"sent nothing in {self.settings.connect_timeout:g} s"
            return service_observation(
                self.kind,
                self.name,
                job,
                port,
                {
                    "address": address,
                    "service": expected,
                    "reachable": True,
                    "error_kind": "protocol" if closed else "timeout",
                },
                error=f"{host_port(job.host, port)}: accepted the connection but {why}; no greeting to judge",
            )
        if telnet is not None and telnet.well_formed:
            greeting = parse_greeting(port, bytes(telnet.text), telnet.options)
        else:
            greeting = parse_greeting(port, raw)
        await close_stream(writer, _GOODBYE.get(greeting.service, b""))
        if greeting.service == UNIDENTIFIED:
            # what was sent, and nothing more: no service, version or login claim for rules to read
            return service_observation(
                self.kind,
                self.name,
                job,
                port,
                {
                    "address": address,
                    "reachable": True,
                    "service": UNIDENTIFIED,
                    "expected_service": expected,
                    "banner": greeting.banner,
                    "banner_bytes": len(raw),
                    "tls": tls,
                    "method": "banner-grab",
                },
            )
        data: dict[str, Any] = {
            "address": address,
            "reachable": True,
            "service": greeting.service,
            "banner": greeting.banner,
            "banner_bytes": len(raw),
            "product": greeting.product,
            "version": greeting.version,
            "version_disclosed": greeting.version is not None,
            "tls": tls,
            "method": "banner-grab",
            **dict(greeting.facts),
            "cleartext_login": greeting.service in CLEARTEXT_LOGIN,
        }
        return self._judged(job, port, data)

    async def _http_server(
        self, job: ProbeJob, net: ScopedNetwork, address: str, port: int, stream: Stream
    ) -> Observation:
        """`HEAD /`: the Server / X-Powered-By product for the catalogue. Disclosure itself is judged on
        the http_security probe (rule http_no_version_disclosure), so it is not repeated here."""
        reader, writer = stream
        service = HTTP_PORTS[port]
        try:
            writer.write(head_request(job.host, net.user_agent))
            await asyncio.wait_for(writer.drain(), self.settings.connect_timeout)
            raw = await read_until(reader, head_complete, self.settings.connect_timeout, MAX_HEAD_BYTES)
            answer = parse_head(raw)
        except (OSError, TimeoutError, ProtocolError) as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            return service_observation(
                self.kind,
                self.name,
                job,
                port,
                {"address": address, "service": service, "error_kind": "protocol"},
                error=f"{host_port(job.host, port)}: HEAD / failed: {reason}"[:300],
            )
        finally:
            await close_stream(writer)
        product, version = product_version(answer.server)
        extra, extra_version = product_version(answer.powered_by)
        shown = [f"Server: {answer.server}"] if answer.server else []
        shown += [f"X-Powered-By: {answer.powered_by}"] if answer.powered_by else []
        data: dict[str, Any] = {
            "address": address,
            "reachable": True,
            "service": service,
            "banner": stable_banner(" | ".join(shown).encode()),
            "product": product,
            "version": version,
            "http.status": answer.status,
            "tls": service == "https",
            "method": "http-head",
        }
        if extra_version:
            data.update({"powered_by.product": extra, "powered_by.version": extra_version})
        return self._judged(job, port, data, [(extra, extra_version)])

    def _judged(
        self, job: ProbeJob, port: int, data: dict[str, Any], more: Sequence[tuple[str | None, str | None]] = ()
    ) -> Observation:
        """Add catalogue matches when some version is known (without one the catalogue cannot say either way)."""
        known = [(p, v) for p, v in [(data.get("product"), data.get("version")), *more] if v]
        if known:
            vulnerable = [hit for p, v in known for hit in self.catalogue.match(p, v)]
            data.update(
                vulnerable=vulnerable,
                vulnerable_count=len(vulnerable),
                cves=sorted({cve for hit in vulnerable for cve in hit["cves"]}),
            )
        return service_observation(self.kind, self.name, job, port, data)

    async def _read_greeting(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[bytes, TelnetParser | None, bool]:
        """(bytes read, the Telnet parser if the stream opened with IAC, whether the peer closed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.connect_timeout
        raw = bytearray()
        telnet: TelnetParser | None = None
        while len(raw) < MAX_GREETING_BYTES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            speaking = telnet is not None and telnet.negotiated and telnet.text.strip()
            wait = min(remaining, IDLE_GAP) if speaking else remaining
            try:
                chunk = await asyncio.wait_for(reader.read(MAX_GREETING_BYTES - len(raw)), wait)
            except TimeoutError:
                break
            if not chunk:
                return bytes(raw), telnet, True
            if not raw and chunk[0] == IAC:
                # a Telnet server negotiates first; 0xFF later in another stream is data, never answered
                telnet = TelnetParser()
            raw += chunk
            if telnet is not None:
                refusals = telnet.feed(chunk)
                if telnet.invalid:  # not Telnet after all: stop answering, the bytes are judged as they are
                    break
                if refusals:
                    writer.write(refusals)
                    await asyncio.wait_for(writer.drain(), remaining)
            elif _greeting_complete(bytes(raw)):
                break
        return bytes(raw), telnet, False

    def _closed(self, job: ProbeJob, address: str, port: int, service: str) -> Observation:
        data: dict[str, Any] = {
            "address": address,
            "reachable": False,
            "service": service,
            "version_disclosed": False,
            "cleartext_login": False,
            "vulnerable": [],
            "vulnerable_count": 0,
            "cves": [],
            "method": "banner-grab",
        }
        return service_observation(self.kind, self.name, job, port, data)
