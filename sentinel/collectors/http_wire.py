"""One HTTP/1.1 GET over one admitted connection, read with `recvmsg` so every answer carries the kernel's receive
stamp: the request's timing (`http_timing.WireClock`) is the site's even when the event loop is saturated.

The HTTP probes call `wire_get` only with an address that `ScopedNetwork.resolve()` returned and `admit()` let
through (scope, circuit breaker, rate limits); it checks the address against the scope once more right before
`connect()` and connects to nothing else: no resolver, no pool, no redirects of its own (the probes re-admit
every hop). At most `max_connections` of these connections are open per ScopedNetwork at once.

A `WirePool` lets the untimed requests of one job (the path checks of http_security) reuse keep-alive connections
to the same origin instead of paying a TCP and TLS handshake each; the timed request of the http probe never uses
one, so its timing is always that of a fresh connection, as curl's.

HTTP/1.1 framing is h11's (sans-IO, strict, bounded header size); TLS is the ssl module's over memory BIOs, so
the same socket reads serve both. Bodies are decoded (gzip, deflate) as aiohttp's `auto_decompress` did, and
bounded after decoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import weakref
import zlib
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sentinel.collectors.http_timing import WireClock, tcp_handshake_rtt_us
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.rawscan import enable_timestamps, received_at, wall_ns

if TYPE_CHECKING:
    import h11
    from multidict import CIMultiDict
    from yarl import URL

# h11, multidict and yarl are imported in the methods that use them, when a probe runs: the settings import the
# HTTP probes, and with them this module, only for their Options.

RECV_BYTES = 65_536
_ANC_BYTES = socket.CMSG_SPACE(16)
MAX_HEADER_BYTES = 65_536  # h11 refuses a status line plus headers larger than this
ACCEPT_ENCODING = "gzip, deflate"  # what aiohttp asked for without brotli installed; decoded below
#: keep-alive connections a pool opens to one origin at most (browsers open six)
POOL_PER_ORIGIN = 4
#: the most of an answer's unread body a pooled connection reads and drops to be reused: less than a handshake costs
DRAIN_BYTES = 65_536

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
        import h11

        self._sock = sock
        self._clock = clock
        self._deadline = deadline
        self._loop = asyncio.get_running_loop()
        self._tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        #: bytes of an answer have arrived in this request cycle (a reused connection that fails before any did
        #: was closed by the server between requests: the request may be sent again)
        self.answered = False
        self._framed = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    @property
    def reusable(self) -> bool:
        """The last answer was read to its end and neither side asked to close."""
        import h11

        return self._http.our_state is h11.DONE and self._http.their_state is h11.DONE

    @property
    def drainable(self) -> bool:
        """The answer's body was left unread part way, on a connection that could then take another request."""
        import h11

        return self._framed and self._http.our_state is h11.DONE and self._http.their_state is h11.SEND_BODY

    def reuse(self, clock: WireClock, deadline: float) -> None:
        """Ready a `reusable` connection for its next request, timed on `clock` and bounded by `deadline`."""
        self._http.start_next_cycle()
        self._clock, self._deadline, self.answered = clock, deadline, False

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._sock.close()

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
        # One timer per deadline, not one per wait (a request waits several times; at tens of thousands of requests
        # a sweep, re-arming a timeout for each wait was a tenth of the HTTP path's time).
        if self._timer is None or self._timer_at != self._deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._timer_at = self._loop.call_at(self._deadline, self._expire), self._deadline
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None
            if readable:
                self._loop.remove_reader(fd)
            else:
                self._loop.remove_writer(fd)

    def _expire(self) -> None:
        """The deadline passed: the wait in progress (or the next one, at once) raises TimeoutError."""
        self._timer = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(TimeoutError())

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
        import h11

        try:
            while True:
                event = self._http.next_event()
                if event is not h11.NEED_DATA:
                    return event
                data = await self._recv()
                self.answered = self.answered or bool(data)  # HTTP bytes, not TLS records such as close_notify
                self._http.receive_data(data)
        except h11.RemoteProtocolError as exc:
            raise HttpProtocolError(f"not a readable HTTP/1.1 answer: {exc}") from None

    async def request(self, target: str, headers: list[tuple[str, str]]) -> WireResponse:
        import h11
        from multidict import CIMultiDict

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
                # a body framed by its length or by chunks, on a connection neither side closes, can be drained
                connection = fields.get("Connection", "").lower()
                framed = "Content-Length" in fields or "chunked" in fields.get("Transfer-Encoding", "").lower()
                self._framed = event.http_version == b"1.1" and "close" not in connection and framed
                return WireResponse(event.status_code, fields, self)
            raise HttpProtocolError(f"the server closed the connection before answering ({type(event).__name__})")

    async def drain(self, limit: int) -> None:
        """Read and drop what is left of the answer (at most `limit` bytes), so the connection can be reused."""
        import h11

        left = limit
        while self._http.their_state is h11.SEND_BODY and left > 0:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                left -= len(event.data)
            elif not isinstance(event, h11.EndOfMessage):
                return

    async def read_body(self, limit: int, decoder: _Decoder) -> tuple[bytes, bool]:
        import h11

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


Origin = tuple[str, int, bool, str | None]  # address, port, TLS, server name


class WirePool:
    """Keep-alive connections of one job, reused request after request (HTTP/1.1 persistent connections).

    A connection goes back to the pool only when its answer was read to the end and neither side asked to close
    (h11 tracks both); anything else is closed. A request whose reused connection fails before any byte of an
    answer arrived (the server closed it between requests: keep-alive timeouts race with requests) is sent once
    more on a new connection, as browsers do for GETs. At most `per_origin` connections per origin; each holds
    one of the ScopedNetwork's `max_connections` slots while open. A request that finds none idle opens one if a
    slot is free, waits for one of the job's own to come back if it has any, and only otherwise queues for a slot
    (holding none), so jobs holding idle connections never wait on each other. `close()` ends the job's use."""

    def __init__(self, per_origin: int = POOL_PER_ORIGIN) -> None:
        self.per_origin = max(1, per_origin)
        self._idle: defaultdict[Origin, list[_Connection]] = defaultdict(list)
        self._open: Counter[Origin] = Counter()
        self._slots: asyncio.Semaphore | None = None
        self._returned = asyncio.Event()
        #: connections opened and requests sent: what tests and benchmarks measure
        self.opened = 0
        self.requests = 0

    async def _checkout(self, net: ScopedNetwork, origin: Origin) -> _Connection | None:
        """An idle connection to `origin`, or None once a slot is held for a new one (counted as open)."""
        slots = self._slots = _connection_slots(net)
        while True:
            idle = self._idle[origin]
            if idle:
                return idle.pop()
            if self._open[origin] < self.per_origin and (not slots.locked() or self._open[origin] == 0):
                self._open[origin] += 1
                try:
                    if slots.locked():
                        self._close_idle()  # ours elsewhere must not hold slots while this request queues
                    await slots.acquire()
                except BaseException:
                    self._open[origin] -= 1
                    raise
                return None
            self._returned.clear()
            await self._returned.wait()

    def _checkin(self, origin: Origin, conn: _Connection | None) -> None:
        """Back into the pool if it can take another request, else closed."""
        if conn is not None and conn.reusable:
            self._idle[origin].append(conn)
        else:
            self._discard(origin, conn)
        self._returned.set()

    def _discard(self, origin: Origin, conn: _Connection | None) -> None:
        """Close `conn` (None: one that failed while opening) and give back its slot."""
        if conn is not None:
            conn.close()
        self._open[origin] -= 1
        if self._slots is not None:
            self._slots.release()

    def _close_idle(self, only: Origin | None = None) -> None:
        for origin, idle in self._idle.items():
            while idle and only in (None, origin):
                self._discard(origin, idle.pop())

    def close(self) -> None:
        """Close the idle connections (the job is over; none is in use by then)."""
        self._close_idle()
        self._returned.set()


async def _open(address: str, port: int, clock: WireClock, deadline: float, connect_deadline: float) -> _Connection:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        enable_timestamps(sock)
        conn = _Connection(sock, clock, deadline)
        await conn.connect(address, port, connect_deadline)
    except BaseException:
        sock.close()
        raise
    return conn


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
    pool: WirePool | None = None,
) -> AsyncIterator[WireResponse]:
    """GET `url` from `address` (resolved and admitted by `net` for this request); yields once the headers are in.

    Raises TlsHandshakeError, HttpProtocolError, TimeoutError (connect or total timeout) or another OSError.
    `clock` holds the timing, also of a request that failed part way (a request on a reused connection of `pool`
    has no connection timing). Without `pool` the request has a connection of its own and asks the server to
    close it."""
    from yarl import URL

    parsed = URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    headers = [
        ("Host", _host_header(parsed)),
        ("User-Agent", net.user_agent),
        ("Accept", "*/*"),
        ("Accept-Encoding", ACCEPT_ENCODING),
    ]
    host = parsed.raw_host or ""
    server_name = None if _is_literal(host) else host
    https = parsed.scheme == "https"
    target = parsed.raw_path_qs or "/"
    if pool is None:
        async with _connection_slots(net):
            net.check_address(address)  # never connect anywhere the scope does not allow
            start = asyncio.get_running_loop().time()
            conn = await _open(address, port, clock, start + total_timeout, start + connect_timeout)
            try:
                if https:
                    await conn.start_tls(tls_context, server_name)
                yield await conn.request(target, [*headers, ("Connection", "close")])
            finally:
                conn.close()
        return
    origin: Origin = (address, port, https, server_name)
    for attempt in range(2):
        start = asyncio.get_running_loop().time()
        async with asyncio.timeout_at(start + total_timeout):  # waiting for one of the pool's connections counts
            idle = await pool._checkout(net, origin)
        if idle is not None:
            conn = idle
            conn.reuse(clock, start + total_timeout)
        else:
            try:
                net.check_address(address)
                conn = await _open(address, port, clock, start + total_timeout, start + connect_timeout)
            except BaseException:
                pool._checkin(origin, None)
                raise
            pool.opened += 1
            try:
                if https:
                    await conn.start_tls(tls_context, server_name)
            except BaseException:
                pool._checkin(origin, conn)
                raise
        pool.requests += 1
        try:
            response = await conn.request(target, headers)
        except (HttpProtocolError, ConnectionResetError, BrokenPipeError):
            pool._checkin(origin, conn)  # not reusable: h11 has seen the failure, or never got an answer
            if idle is not None and attempt == 0 and not conn.answered:
                # The server closed it between requests (and likely its other idle ones, on the same timeout):
                # send the request once more, on a new connection.
                pool._close_idle(origin)
                continue
            raise
        except BaseException:
            pool._checkin(origin, conn)
            raise
        break
    else:  # pragma: no cover - the second turn always breaks or raises
        raise AssertionError("unreachable")
    try:
        yield response
        if not conn.reusable and conn.drainable:
            with contextlib.suppress(OSError, TimeoutError):  # the connection is closed instead
                await conn.drain(DRAIN_BYTES)
    finally:
        pool._checkin(origin, conn)


def _is_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.strip("[]"))
    except OSError:
        return False
    return True
