"""A demo estate of real servers on 127.77.0.0/24 (loopback: no root, nothing leaves the machine).

- city-portal      HTTPS with an expired, self-signed certificate
- district-portal  plain HTTP that serves the page instead of redirecting to HTTPS
- street-records   a host with its declared service, plus an exposed "database" port
- district-permits registered, but down (nothing listens)
- city-open-data   a healthy HTTPS site with HSTS and an HTTP→HTTPS redirect
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from sentinel.demo.certs import TestCA, self_signed

NET = "127.77.0"
DB_PORTS = (3306, 6379, 5432, 27017, 9200, 11211)

#: what a well-configured site sends (the healthy demo system must produce no findings)
SECURE_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

PAGE = """<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>Sentinel demo service.</p></body></html>"""


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class DemoEstate:
    def __init__(self, folder: Path, net: str = NET) -> None:
        self.folder = folder
        self.net = net
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.Server] = []
        self.systems: list[dict[str, Any]] = []
        self.ca: TestCA | None = None
        self.db_port: int | None = None

    def ip(self, last: int) -> str:
        return f"{self.net}.{last}"

    async def _serve_http(self, host: str, port: int, handler: Any, tls: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port, ssl_context=tls).start()
        self._runners.append(runner)

    async def _serve_tcp(self, host: str, port: int, banner: bytes) -> None:
        async def greet(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                writer.write(banner)
                await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        self._servers.append(await asyncio.start_server(greet, host, port))

    @staticmethod
    def _tls(cert: Path, key: Path) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        return ctx

    async def start(self) -> None:
        certs = self.folder / "certs"
        self.ca = TestCA(certs)
        now = datetime.now(UTC)

        def page(title: str, headers: dict[str, str] | None = None) -> Any:
            async def handler(_: web.Request) -> web.Response:
                return web.Response(
                    text=PAGE.format(title=title),
                    content_type="text/html",
                    headers={"Server": "nginx", **(headers or {})},
                )

            return handler

        # city-portal: expired self-signed certificate, no HSTS
        ip = self.ip(10)
        port = free_port(ip)
        expired = self_signed(
            certs,
            "portal-expired",
            ["portal.demo.gov.cn"],
            not_before=now - timedelta(days=400),
            not_after=now - timedelta(days=12),
        )
        await self._serve_http(ip, port, page("市政务服务门户"), self._tls(expired.cert, expired.key))
        self._add(
            "city-portal",
            "市政务服务门户",
            "市大数据管理中心",
            "city",
            3,
            True,
            [{"url": f"https://{ip}:{port}/"}],
            ["e-gov", "portal"],
        )

        # district-portal: plain HTTP, no redirect
        ip = self.ip(20)
        port = free_port(ip)
        await self._serve_http(ip, port, page("区政府信息公开"))
        self._add(
            "district-portal",
            "区政府信息公开网",
            "区政务服务中心",
            "district",
            2,
            False,
            [{"url": f"http://{ip}:{port}/"}],
            ["e-gov"],
        )

        # street-records: declared service up, plus an exposed database port
        ip = self.ip(30)
        service = free_port(ip)
        await self._serve_tcp(ip, service, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        for candidate in DB_PORTS:
            try:
                await self._serve_tcp(ip, candidate, b"")
            except OSError:
                continue
            self.db_port = candidate
            break
        self._add(
            "street-records",
            "街道档案管理系统",
            "XX街道办事处",
            "street",
            2,
            False,
            [{"host": ip, "ports": [service]}],
            ["records"],
        )

        # district-permits: registered but down
        ip = self.ip(40)
        self._add(
            "district-permits",
            "区行政审批系统",
            "区行政审批局",
            "district",
            3,
            False,
            [{"url": f"http://{ip}:{free_port(ip)}/"}],
            ["e-gov"],
        )

        # city-open-data: healthy (trusted certificate, HSTS, HTTP redirects to HTTPS)
        ip = self.ip(50)
        tls_port, http_port = free_port(ip), free_port(ip)
        good = self.ca.issue("open-data", [ip])
        await self._serve_http(
            ip,
            tls_port,
            page("市公共数据开放平台", SECURE_HEADERS),
            self._tls(good.cert, good.key),
        )

        async def redirect(_: web.Request) -> web.Response:
            raise web.HTTPMovedPermanently(f"https://{ip}:{tls_port}/", headers={"Server": "nginx"})

        await self._serve_http(ip, http_port, redirect)
        self._add(
            "city-open-data",
            "市公共数据开放平台",
            "市大数据管理中心",
            "city",
            3,
            True,
            [{"url": f"https://{ip}:{tls_port}/"}, {"url": f"http://{ip}:{http_port}/"}],
            ["open-data"],
        )

    def _add(
        self,
        sid: str,
        name: str,
        dept: str,
        tier: str,
        level: int,
        cii: bool,
        endpoints: list[dict[str, Any]],
        tags: list[str],
    ) -> None:
        self.systems.append(
            {
                "id": sid,
                "name": name,
                "owner": {"department": dept, "contact": "值班员", "email": f"{sid}@demo.gov.example.cn"},
                "tier": tier,
                "mlps_level": level,
                "cii": cii,
                "endpoints": endpoints,
                "tags": tags,
            }
        )

    def registry_yaml(self) -> str:
        doc = {"scope": {"allow": [f"{self.net}.0/24"]}, "systems": self.systems}
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()
        for runner in self._runners:
            await runner.cleanup()
        self._servers.clear()
        self._runners.clear()

    async def __aenter__(self) -> DemoEstate:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
