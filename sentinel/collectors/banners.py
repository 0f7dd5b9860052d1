"""Service banners: what SSH, FTP, SMTP, POP3, IMAP and Telnet servers say before anyone logs in.

Per host, the well-known service ports among the declared ports and the high-risk list are
connected to once; the greeting is read (bounded in bytes and time), Telnet options are refused
so the login banner arrives, and product/version are matched against the known-vulnerable
catalogue. Nothing is sent beyond Telnet refusals and a protocol goodbye (QUIT / LOGOUT).
Declared web ports get one `HEAD /`, for the product and version in `Server` / `X-Powered-By`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.protocols import ProtocolError
from sentinel.collectors.protocols.greeting import (
    CLEARTEXT_LOGIN,
    IMPLICIT_TLS_PORTS,
    SERVICE_BY_PORT,
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
from sentinel.collectors.protocols.telnet import TelnetParser
from sentinel.collectors.service_common import (
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

    def __init__(self, settings: CollectorSettings, catalogue: Catalogue | None = None) -> None:
        super().__init__(settings)
        # Loaded when the probe is built, so a broken catalogue is reported as FILE:LINE before a sweep.
        self.catalogue = catalogue or load_catalogue(settings.vulnerable_versions)

    def plan(self, system: System) -> Iterable[ProbeJob]:
        return plan_service_jobs(self.name, system, {*SERVICE_BY_PORT, *HTTP_PORTS}, self.settings.high_risk_ports)

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
            raw, telnet = await self._read_greeting(reader, writer)
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
        greeting = parse_greeting(port, bytes(telnet.text) if telnet.negotiated else raw, telnet.options)
        await close_stream(writer, _GOODBYE.get(greeting.service, b""))
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
        }
        if raw:  # a silent port proves no protocol, so it is not called a login service either way
            data["cleartext_login"] = greeting.service in CLEARTEXT_LOGIN
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
    ) -> tuple[bytes, TelnetParser]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.connect_timeout
        raw = bytearray()
        telnet = TelnetParser()
        while len(raw) < MAX_GREETING_BYTES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            wait = min(remaining, IDLE_GAP) if telnet.negotiated and telnet.text.strip() else remaining
            try:
                chunk = await asyncio.wait_for(reader.read(MAX_GREETING_BYTES - len(raw)), wait)
            except TimeoutError:
                break
            if not chunk:
                break
            raw += chunk
            refusals = telnet.feed(chunk)
            if refusals:
                writer.write(refusals)
                await asyncio.wait_for(writer.drain(), remaining)
            elif not telnet.negotiated and _greeting_complete(bytes(raw)):
                break
        return bytes(raw), telnet

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
