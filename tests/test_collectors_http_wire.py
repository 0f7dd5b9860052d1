"""http_wire's keep-alive pool (`WirePool`), against loopback servers written with h11 that keep connections alive,
close them between requests, or ask to close: requests share connections, a connection the server closed in the
meantime costs a retry and never a wrong answer, slots are given back, and the http_security probe reports the same
observation whether its requests share connections or not."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import h11
import pytest
from aiohttp import web

from sentinel.collectors import http_security
from sentinel.collectors.base import ProbeJob
from sentinel.collectors.http_fetch import scoped_get
from sentinel.collectors.http_security import HttpSecurityProbe
from sentinel.collectors.http_wire import DRAIN_BYTES, Origin, WirePool, _Connection, _connection_slots
from sentinel.collectors.network import ScopedNetwork
from sentinel.config.settings import CollectorSettings
from sentinel.demo.certs import self_signed
from sentinel.demo.estate import free_port
from sentinel.registry.scope import Scope

HOST = "127.0.0.1"
SCOPE = Scope(allow=["127.0.0.0/8"])
SETTINGS = CollectorSettings(per_target_rate=1000, per_target_burst=200, global_rate=10_000)
TIMEOUT = aiohttp.ClientTimeout(total=5, sock_connect=2)


@dataclass
class Site:
    """Answers `GET /big/N` with N bytes and any other path with a line naming it. `mode`: keep (keep-alive),
    drop (close the connection right after each answer, without saying so) or ask (answer with Connection: close)."""

    mode: str = "keep"
    connections: int = 0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    open: set[asyncio.StreamWriter] = field(default_factory=set)

    def hang_up(self) -> None:
        """Close every connection, as a server does when its keep-alive timeout ends."""
        for writer in self.open:
            writer.close()

    @staticmethod
    def body(target: str) -> bytes:
        if target.startswith("/big/"):
            return b"x" * int(target.removeprefix("/big/"))
        return f"you asked for {target}\n".encode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                elif isinstance(event, h11.Request):
                    target = event.target.decode()
                    self.requests.append((target, {k.decode().lower(): v.decode() for k, v in event.headers}))
                    body = self.body(target)
                    headers = [("Content-Length", str(len(body))), ("Content-Type", "text/plain")]
                    if self.mode == "ask":
                        headers.append(("Connection", "close"))
                    writer.write(conn.send(h11.Response(status_code=200, headers=headers)) or b"")
                    writer.write(conn.send(h11.Data(data=body)) or b"")
                    writer.write(conn.send(h11.EndOfMessage()) or b"")
                    await writer.drain()
                    if self.mode != "keep" or conn.our_state is h11.MUST_CLOSE:
                        return
                elif isinstance(event, h11.EndOfMessage):
                    if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                        conn.start_next_cycle()
                else:  # ConnectionClosed, or anything this server does not serve
                    return
        except (ConnectionError, h11.ProtocolError):
            return
        finally:
            self.open.discard(writer)
            writer.close()


async def start(site: Site, tls: ssl.SSLContext | None = None) -> tuple[asyncio.Server, int]:
    port = free_port(HOST)
    server = await asyncio.start_server(site.handle, HOST, port, ssl=tls)
    return server, port


@pytest.fixture
async def net() -> AsyncIterator[ScopedNetwork]:
    network = ScopedNetwork(SCOPE, SETTINGS, raw_sockets=False)
    yield network
    await network.close()


def free_slots(net: ScopedNetwork) -> int:
    return _connection_slots(net)._value


async def test_requests_share_keep_alive_connections(net: ScopedNetwork) -> None:
    site = Site()
    server, port = await start(site)
    pool = WirePool(per_origin=4)
    async with server:
        one_by_one = [
            await scoped_get(net, f"http://{HOST}:{port}/a{i}", max_bytes=4096, timeout=TIMEOUT, pool=pool)
            for i in range(10)
        ]
        assert site.connections == 1  # one after the other: one connection
        at_once = await asyncio.gather(
            *(
                scoped_get(net, f"http://{HOST}:{port}/b{i}", max_bytes=4096, timeout=TIMEOUT, pool=pool)
                for i in range(20)
            )
        )
        pool.close()
    assert [f.body for f in one_by_one] == [f"you asked for /a{i}\n".encode() for i in range(10)]
    assert [f.body for f in at_once] == [f"you asked for /b{i}\n".encode() for i in range(20)]
    assert site.connections <= 4 and pool.opened == site.connections and pool.requests == 30
    assert free_slots(net) == SETTINGS.max_connections  # every slot back once the pool is closed


async def test_a_connection_the_server_closed_between_requests_is_sent_again(net: ScopedNetwork) -> None:
    site = Site(mode="drop")  # keep-alive as far as the answer says, but the server hangs up right after
    server, port = await start(site)
    pool = WirePool()
    async with server:
        answers = [
            await scoped_get(net, f"http://{HOST}:{port}/p{i}", max_bytes=4096, timeout=TIMEOUT, pool=pool)
            for i in range(5)
        ]
        pool.close()
    assert [a.body for a in answers] == [f"you asked for /p{i}\n".encode() for i in range(5)]
    assert [t for t, _ in site.requests] == [f"/p{i}" for i in range(5)]  # each request reached it exactly once
    assert site.connections == 5 and free_slots(net) == SETTINGS.max_connections


async def test_idle_connections_the_server_all_closed_cost_one_retry_each_request(net: ScopedNetwork) -> None:
    site = Site()
    server, port = await start(site)
    pool = WirePool(per_origin=4)

    async def batch(tag: str) -> list[bytes]:
        urls = [f"http://{HOST}:{port}/{tag}{i}" for i in range(8)]
        got = await asyncio.gather(*(scoped_get(net, u, max_bytes=4096, timeout=TIMEOUT, pool=pool) for u in urls))
        return [g.body for g in got]

    async with server:
        assert await batch("a") == [f"you asked for /a{i}\n".encode() for i in range(8)]
        opened = site.connections
        site.hang_up()  # every idle connection of the pool is now dead
        await asyncio.sleep(0.05)
        assert await batch("b") == [f"you asked for /b{i}\n".encode() for i in range(8)]
        pool.close()
    assert opened <= 4 and site.connections <= 2 * 4
    assert free_slots(net) == SETTINGS.max_connections


async def test_an_answer_that_asks_to_close_is_not_reused(net: ScopedNetwork) -> None:
    site = Site(mode="ask")
    server, port = await start(site)
    pool = WirePool()
    async with server:
        for i in range(4):
            await scoped_get(net, f"http://{HOST}:{port}/c{i}", max_bytes=4096, timeout=TIMEOUT, pool=pool)
        pool.close()
    assert site.connections == 4 == pool.opened and free_slots(net) == SETTINGS.max_connections


async def test_an_unread_body_is_drained_when_small_and_the_connection_closed_when_large(net: ScopedNetwork) -> None:
    site = Site()
    server, port = await start(site)
    pool = WirePool()
    async with server:
        small = await scoped_get(net, f"http://{HOST}:{port}/big/10000", max_bytes=100, timeout=TIMEOUT, pool=pool)
        await scoped_get(net, f"http://{HOST}:{port}/after-small", max_bytes=100, timeout=TIMEOUT, pool=pool)
        assert site.connections == 1  # the rest of the 10 KB was read and dropped: the connection went on
        large = f"http://{HOST}:{port}/big/{DRAIN_BYTES * 4}"
        big = await scoped_get(net, large, max_bytes=100, timeout=TIMEOUT, pool=pool)
        await scoped_get(net, f"http://{HOST}:{port}/after-large", max_bytes=100, timeout=TIMEOUT, pool=pool)
        pool.close()
    assert (small.body, small.truncated, big.body, big.truncated) == (b"x" * 100, True, b"x" * 100, True)
    assert site.connections == 2  # more than DRAIN_BYTES left: closed, and the next request opened another


async def test_only_pooled_requests_keep_the_connection_and_only_unpooled_ones_are_timed(net: ScopedNetwork) -> None:
    site = Site()
    server, port = await start(site)
    pool = WirePool()
    async with server:
        alone = await scoped_get(net, f"http://{HOST}:{port}/alone", max_bytes=4096, timeout=TIMEOUT)
        first = await scoped_get(net, f"http://{HOST}:{port}/first", max_bytes=4096, timeout=TIMEOUT, pool=pool)
        reused = await scoped_get(net, f"http://{HOST}:{port}/reused", max_bytes=4096, timeout=TIMEOUT, pool=pool)
        pool.close()
    headers = dict(site.requests)
    assert headers["/alone"].get("connection") == "close" and "connection" not in headers["/first"]
    assert alone.latency_ms is not None and first.latency_ms is not None  # a connection of its own: timed
    assert reused.latency_ms is None  # no connection of its own to time
    assert site.connections == 2


async def test_https_requests_share_one_handshake(net: ScopedNetwork, tmp_path: Path) -> None:
    cert = self_signed(tmp_path, "wire", ["localhost", HOST])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert.cert, cert.key)
    site = Site()
    server, port = await start(site, tls)
    pool = WirePool()
    async with server:
        for i in range(6):
            got = await scoped_get(net, f"https://{HOST}:{port}/s{i}", max_bytes=4096, timeout=TIMEOUT, pool=pool)
            assert got.body == f"you asked for /s{i}\n".encode()
        pool.close()
    assert site.connections == 1


async def test_a_failed_connection_gives_its_slot_back(net: ScopedNetwork) -> None:
    port = free_port(HOST)  # nothing listens
    pool = WirePool()
    for _ in range(3):
        with pytest.raises(OSError):
            await scoped_get(net, f"http://{HOST}:{port}/", max_bytes=4096, timeout=TIMEOUT, pool=pool)
    pool.close()
    origin: Origin = (HOST, port, False, None)
    assert pool._open[origin] == 0 and free_slots(net) == SETTINGS.max_connections


class _NoReuse(WirePool):
    """A pool that never hands out an idle connection: one connection per request, as before pooling."""

    async def _checkout(self, net: ScopedNetwork, origin: Origin) -> _Connection | None:
        self._close_idle()
        return await super()._checkout(net, origin)


async def test_http_security_reports_the_same_with_shared_connections_as_without(
    net: ScopedNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def site(request: web.Request) -> web.Response:
        if request.path == "/":
            return web.Response(
                text="<html><body>home</body></html>",
                content_type="text/html",
                headers={"Server": "nginx/1.22.1", "Set-Cookie": "sid=1; Path=/"},
            )
        if request.path == "/.git/HEAD":
            return web.Response(text="ref: refs/heads/main\n")
        if request.path == "/.env":
            return web.Response(text="DB_PASSWORD=x\nSECRET_KEY=y\n")
        if request.path == "/uploads/":
            return web.Response(text="<title>Index of /uploads/</title>", content_type="text/html")
        if request.path == "/backup.zip":
            return web.Response(body=b"PK\x03\x04" + b"\0" * 20_000)  # longer than a path check reads
        return web.Response(status=404, text="not found " * 50)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", site)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(HOST)
    await web.TCPSite(runner, HOST, port).start()
    url = f"http://{HOST}:{port}/"
    job = ProbeJob("http_security", "s", HOST, url, url=url)
    probe = HttpSecurityProbe(SETTINGS)
    try:
        (shared,) = await probe.run(job, net)
        monkeypatch.setattr(http_security, "WirePool", _NoReuse)
        (separate,) = await probe.run(job, net)
    finally:
        await runner.cleanup()
    assert shared.status.value == "ok" and shared.data["exposed.count"] == 3 and shared.data["dirlist.count"] == 1
    assert shared.data == separate.data
