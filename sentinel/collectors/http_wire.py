"""One HTTP/1.1 GET over one admitted connection, read with `recvmsg` so every answer carries the kernel's receive
stamp: the request's timing (`http_timing.WireClock`) is the site's even when the event loop is saturated.

The HTTP probes call `wire_get` only with an address that `ScopedNetwork.resolve()` returned and `admit()` let
through (scope, circuit breaker, rate limits); it checks the address against the scope once more right before
`connect()` and connects to nothing else: no resolver, no pool, no redirects of its own (the probes re-admit
every hop). At most `max_connections` of these connections are open per ScopedNetwork at once.

HTTP/1.1 framing is h11's (sans-IO, strict, bounded header size); TLS is the ssl module's over memory BIOs, so
the same socket reads serve both. Bodies are decoded (gzip, deflate) as aiohttp's `auto_decompress` did, and
bounded after decoding.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import weakref
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h11
from multidict import CIMultiDict
from yarl import URL

from sentinel.collectors.http_timing import WireClock, tcp_handshake_rtt_us
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.rawscan import enable_timestamps, received_at, wall_ns

RECV_BYTES = 65_536
_ANC_BYTES = socket.CMSG_SPACE(16)
MAX_HEADER_BYTES = 65_536  # h11 refuses a status line plus headers larger than this
ACCEPT_ENCODING = "gzip, deflate"  # what aiohttp asked for without brotli installed; decoded below

_slots: weakref.WeakKeyDictionary[ScopedNetwork, asyncio.Semaphore] = weakref.WeakKeyDictionary()


class TlsHandshakeError(OSError):
    """TCP connected and the TLS handshake failed (the server is there; its TLS is what is wrong)."""


class HttpProtocolError(OSError):
    """The peer answered, but not with HTTP/1.1 that can be read."""


def _connection_slots(net: ScopedNetwork) -> asyncio.Semaphore:
    slots = _slots.get(net)
    if slots is None:
        slots = _slots[net] = asyncio.Semaphore(net.settings.max_connections)
    return slots


class _Decoder:
    """Content-Encoding decoding with bounded output (a small compressed body cannot make us hold a large one)."""

    def __init__(self, encoding: str | None) -> None:
        name = (encoding or "").strip().lower()
        self._raw_fallback = name == "deflate"  # many servers send raw deflate under that name
        self._started = False
        if name in ("gzip", "x-gzip"):
            self._z: zlib._Decompress | None = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif name == "deflate":
            self._z = zlib.decompressobj(zlib.MAX_WBITS)
        else:  # identity, or an encoding we did not ask for: passed on as it came, as aiohttp does
            self._z = None

    def feed(self, data: bytes, room: int) -> tuple[bytes, bool]:
        """(up to `room` decoded bytes, whether there was more)."""
        if self._z is None:
            return data[:room], len(data) > room
        try:
            out = self._z.decompress(data, room + 1)
        except zlib.error as exc:
            if not (self._raw_fallback and not self._started):
                raise HttpProtocolError(f"cannot decode the body: {exc}") from None
            self._z = zlib.decompressobj(-zlib.MAX_WBITS)
            self._raw_fallback = False
            return self.feed(data, room)
        self._started = True
        return out[:room], len(out) > room or bool(self._z.unconsumed_tail)


@dataclass
class WireResponse:
    """An HTTP answer whose headers have been read; `read()` reads (part of) its body."""

    status: int
    headers: CIMultiDict[str]
    _conn: _Connection = field(repr=False)

    async def read(self, limit: int) -> tuple[bytes, bool]:
        """Up to `limit` decoded bytes of the body, and whether there was more. Call once."""
        return await self._conn.read_body(limit, _Decoder(self.headers.get("Content-Encoding")))


class _Connection:
    def __init__(self, sock: socket.socket, clock: WireClock, deadline: float) -> None:
        self._sock = sock
        self._clock = clock
        self._deadline = deadline
        self._loop = asyncio.get_running_loop()
        self._tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)

    async def _ready(self, readable: bool) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()
        fd = self._sock.fileno()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        if readable:
            self._loop.add_reader(fd, wake)
        else:
            self._loop.add_writer(fd, wake)
        try:
            async with asyncio.timeout_at(self._deadline):
                await waiter
        finally:
            if readable:
                self._loop.remove_reader(fd)
            else:
                self._loop.remove_writer(fd)

    async def connect(self, address: str, port: int, connect_deadline: float) -> None:
        target: tuple[str, int] | tuple[str, int, int, int] = (
            (address, port, 0, 0) if self._sock.family == socket.AF_INET6 else (address, port)
        )
        self._clock.starting()
        try:
            self._sock.connect(target)
        except (BlockingIOError, InterruptedError):
            deadline, self._deadline = self._deadline, min(self._deadline, connect_deadline)
            try:
                await self._ready(readable=False)
            finally:
                self._deadline = deadline
            error = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, f"connect to {address}:{port}: {os.strerror(error)}") from None
        self._clock.established(tcp_handshake_rtt_us(self._sock))

    async def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            stamp = wall_ns()  # right before the syscall: the loop cannot delay what follows
            try:
                sent = self._sock.send(view)
            except (BlockingIOError, InterruptedError):
                await self._ready(readable=False)
                continue
            self._clock.sent(stamp)
            view = view[sent:]

    async def _recv_raw(self) -> bytes:
        while True:
            try:
                data, ancdata, _flags, _peer = self._sock.recvmsg(RECV_BYTES, _ANC_BYTES)
            except (BlockingIOError, InterruptedError):
                await self._ready(readable=True)
                continue
            if data:
                self._clock.received(received_at(ancdata))
            return data

    async def _flush_tls(self) -> None:
        if self._outgoing.pending:
            await self._send(self._outgoing.read())

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush_tls()
                raw = await self._recv_raw()
                if not raw:
                    raise TlsHandshakeError("the server closed the connection during the TLS handshake") from None
                self._incoming.write(raw)
            except ssl.SSLError as exc:
                raise TlsHandshakeError(str(exc)) from exc
        await self._flush_tls()
        self._clock.secured = True
        self._clock.handshake_ns = self._clock.last_rx_ns or self._clock.established_ns

    async def _recv(self) -> bytes:
        """Plain bytes from the peer; b"" at the end of the stream."""
        if self._tls is None:
            return await self._recv_raw()
        while True:
            try:
                data = self._tls.read(RECV_BYTES)
            except ssl.SSLWantReadError:
                await self._flush_tls()
                raw = await self._recv_raw()
                if raw:
                    self._incoming.write(raw)
                else:
                    self._incoming.write_eof()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""  # close_notify, or a server that just closes (most do)
            await self._flush_tls()
            return data

    async def _send_plain(self, data: bytes) -> None:
        if self._tls is None:
            await self._send(data)
            return
        self._tls.write(data)
        await self._flush_tls()

    async def _next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            while True:
                event = self._http.next_event()
                if event is not h11.NEED_DATA:
                    return event
                self._http.receive_data(await self._recv())
        except h11.RemoteProtocolError as exc:
            raise HttpProtocolError(f"not a readable HTTP/1.1 answer: {exc}") from None

    async def request(self, target: str, headers: list[tuple[str, str]]) -> WireResponse:
        out = self._http.send(h11.Request(method="GET", target=target, headers=headers))
        out = (out or b"") + (self._http.send(h11.EndOfMessage()) or b"")
        await self._send_plain(out)
        while True:
            event = await self._next_event()
            if isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and the like: the answer follows
            if isinstance(event, h11.Response):
                self._clock.headers_ns = self._clock.last_rx_ns
                fields = CIMultiDict(
                    (name.decode("latin-1"), value.decode("utf-8", "replace"))
                    for name, value in event.headers.raw_items()
                )
                return WireResponse(event.status_code, fields, self)
            raise HttpProtocolError(f"the server closed the connection before answering ({type(event).__name__})")

    async def read_body(self, limit: int, decoder: _Decoder) -> tuple[bytes, bool]:
        body = bytearray()
        more = False
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                part, over = decoder.feed(bytes(event.data), limit - len(body))
                body += part
                self._clock.end_ns = self._clock.last_rx_ns
                if over or len(body) >= limit:
                    # A body of exactly `limit` bytes is complete if the message ends right here.
                    try:
                        more = over or not isinstance(self._http.next_event(), h11.EndOfMessage)
                    except h11.RemoteProtocolError:
                        more = True
                    break
                continue
            break  # EndOfMessage (or the connection closed)
        self._clock.end_ns = self._clock.last_rx_ns
        return bytes(body), more


def _host_header(url: URL) -> str:
    return url.host_port_subcomponent or ""


@asynccontextmanager
async def wire_get(
    net: ScopedNetwork,
    address: str,
    url: str,
    *,
    clock: WireClock,
    tls_context: ssl.SSLContext,
    connect_timeout: float,
    total_timeout: float,
) -> AsyncIterator[WireResponse]:
    """GET `url` from `address` (resolved and admitted by `net` for this request); yields once the headers are in.

    Raises TlsHandshakeError, HttpProtocolError, TimeoutError (connect or total timeout) or another OSError.
    `clock` holds the timing, also of a request that failed part way."""
    parsed = URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    headers = [
        ("Host", _host_header(parsed)),
        ("User-Agent", net.user_agent),
        ("Accept", "*/*"),
        ("Accept-Encoding", ACCEPT_ENCODING),
        ("Connection", "close"),
    ]
    async with _connection_slots(net):
        net.check_address(address)  # never connect anywhere the scope does not allow
        loop = asyncio.get_running_loop()
        start = loop.time()
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            enable_timestamps(sock)
            conn = _Connection(sock, clock, start + total_timeout)
            await conn.connect(address, port, start + connect_timeout)
            if parsed.scheme == "https":
                host = parsed.raw_host or ""
                await conn.start_tls(tls_context, None if _is_literal(host) else host)
            yield await conn.request(parsed.raw_path_qs or "/", headers)
        finally:
            sock.close()


def _is_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.strip("[]"))
    except OSError:
        return False
    return True
