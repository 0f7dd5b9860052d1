"""ScopedNetwork: the only door through which probes reach the network.

Every connection *and every raw packet* (SYN, ICMP echo) is checked against the registry scope (the
address, after DNS), against the target's circuit breaker, counted against per-target and global rate
limits, and bounded by a timeout. Connections also take a per-target concurrency slot; raw probes are
packets, not connections, so they are paced by the packet rate limits alone and wait for answers with
adaptive timeouts learned from measured RTTs (`collectors/rtt.py`). Names that resolve outside the scope
raise `OutOfScope` and nothing is sent.

Round-trip times are measured around the I/O only, after admission: raw and UDP answers carry the kernel's
receive stamp, sends are stamped right at `sendto`; a connect scan's open port reports the kernel's own
handshake RTT (TCP_INFO `tcpi_rtt`, SYN to SYN-ACK), so event-loop delay is not counted there either.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import random
import socket
import ssl
import struct
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from sentinel import __version__
from sentinel.collectors import capabilities
from sentinel.collectors.circuit_breaker import CircuitBreaker, CircuitOpen
from sentinel.collectors.icmp_echo import IcmpPinger
from sentinel.collectors.ratelimit import RateLimiter
from sentinel.collectors.rawscan import elapsed_ms, enable_timestamps, received_at, wall_ns
from sentinel.collectors.rtt import RttTable
from sentinel.collectors.syn_scan import AnswerLost, SynScanner
from sentinel.config.settings import CollectorSettings
from sentinel.registry.scope import Scope

if TYPE_CHECKING:
    import aiohttp


class OutOfScope(Exception):  # noqa: N818 - a verdict, not a bug
    """A host or address is outside the declared scope; nothing was sent to it."""


class PortState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    FILTERED = "filtered"
    #: could not tell: Sentinel's own receive socket dropped packets while every resend waited, so the
    #: silence proves nothing (never reported as filtered or closed by guess)
    UNKNOWN = "unknown"


_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}
_UDP_ANC_BYTES = socket.CMSG_SPACE(16)
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_TCPI_RTT_OFFSET = 68  # struct tcp_info: tcpi_rtt (microseconds) follows 8 bytes of u8 fields and 15 u32s
_VERDICTS_KEPT = 65536  # scope verdicts remembered per address
#: extra SYNs for a port whose answer may have been dropped by our own receive socket (on top of `retries`)
LOST_RESENDS = 2
log = logging.getLogger(__name__)
T = TypeVar("T")

__all__ = ["CircuitOpen", "OutOfScope", "PortState", "ScopedNetwork", "jsonable_headers"]


class ScopedNetwork:
    def __init__(
        self,
        scope: Scope,
        settings: CollectorSettings,
        limiter: RateLimiter | None = None,
        breaker: CircuitBreaker | None = None,
        raw_sockets: bool | None = None,
        packet_limiter: RateLimiter | None = None,
    ) -> None:
        """`raw_sockets` forces the raw-socket capability answer (None: detect it)."""
        self.scope = scope
        self.settings = settings
        self.limiter = limiter or RateLimiter(settings.per_target_rate, settings.per_target_burst, settings.global_rate)
        #: raw probe packets (SYN, ICMP echo) have their own per-target and global budget
        self.packet_limiter = packet_limiter or RateLimiter(
            settings.per_target_packet_rate, settings.per_target_packet_burst, settings.global_packet_rate
        )
        ceiling = settings.connect_timeout
        self.rtt = RttTable(settings.rtt_initial_timeout, min(settings.rtt_min_timeout, ceiling), ceiling)
        self.breaker = breaker or CircuitBreaker()
        self._raw_sockets = raw_sockets
        self._syn: SynScanner | None = None
        self._icmp: IcmpPinger | None = None
        self._warned_no_raw = False
        self._conn_slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(settings.per_target_concurrency)
        )
        self._dns_cache: dict[str, list[str]] = {}
        self._verdicts: dict[str, bool] = {}
        self._verdicts_scope: Scope | None = None
        #: connection attempts per address: what tests and benchmarks measure
        self.sent: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None

    @property
    def user_agent(self) -> str:
        contact = f"; +{self.settings.contact}" if self.settings.contact else ""
        return f"sentinel/{__version__} (security monitoring{contact})"

    # -- scope ----------------------------------------------------------------------------
    def check_address(self, address: str) -> None:
        """Raise OutOfScope unless the scope allows `address`; asked for every connection and every packet.

        Verdicts are remembered per address text for this (frozen) scope object: at a million packets a sweep,
        parsing the address against every network each time was a third of the scan's CPU."""
        if self.scope is not self._verdicts_scope:
            self._verdicts.clear()
            self._verdicts_scope = self.scope
        allowed = self._verdicts.get(address)
        if allowed is None:
            if len(self._verdicts) >= _VERDICTS_KEPT:
                self._verdicts.clear()
            allowed = self._verdicts[address] = self.scope.allows_address(address)
        if not allowed:
            raise OutOfScope(f"address {address} is outside the declared scope")

    async def resolve(self, host: str) -> list[str]:
        """In-scope addresses for a host name or literal; OutOfScope if there are none."""
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            self.check_address(host)
            return [host]
        if not self.scope.allows_name(host):
            raise OutOfScope(f"host name {host} is outside the declared scope")
        cached = self._dns_cache.get(host)
        if cached is not None:
            return cached
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), self.settings.connect_timeout
            )
        except (TimeoutError, socket.gaierror, UnicodeError) as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [a for a in addresses if self.scope.allows_address(a)]
        if not allowed:
            raise OutOfScope(f"{host} resolves to {', '.join(addresses)}, outside the declared scope")
        self._dns_cache[host] = allowed
        return allowed

    async def admit(self, address: str) -> None:
        """Scope check, circuit breaker and rate-limit wait before one connection or raw packet to `address`."""
        self.check_address(address)
        self.breaker.check(address)
        await self.limiter.acquire(address)
        self.breaker.check(address)  # it may have opened while this probe waited for its token
        self.sent[address] += 1

    async def admit_packet(self, address: str) -> None:
        """Like `admit`, for one raw probe packet: paced by the packet rate limits."""
        self.check_address(address)
        self.breaker.check(address)
        await self.packet_limiter.acquire(address)
        self.breaker.check(address)
        self.sent[address] += 1

    # -- circuit breaker feedback --------------------------------------------------------------
    # Probes report what a target told them (HTTP status, connection failures); admit() then refuses every
    # probe of that target, raw packets included, while its circuit is open. Only reports trip it: a timeout
    # is an answer for some probes (a silent DNS resolver, a filtered port), so nothing is counted implicitly.
    def report_http_status(self, address: str, status: int, retry_after: str | None = None) -> None:
        """Feed an HTTP answer to the target's circuit breaker (429/Retry-After and 5xx bursts back off)."""
        self.breaker.record_status(address, status, retry_after)

    def report_failure(self, address: str, reason: str = "connection failures") -> None:
        self.breaker.record_failure(address, reason)

    # -- raw-socket rights and scan method --------------------------------------------------
    @property
    def raw_sockets(self) -> bool:
        if self._raw_sockets is None:
            self._raw_sockets = capabilities.raw_socket_rights()
        return self._raw_sockets

    @property
    def port_scan_method(self) -> str:
        """`tcp-syn` or `tcp-connect`, from `collectors.scan_method` and the raw-socket rights."""
        wanted = str(getattr(self.settings, "scan_method", "auto"))
        if wanted == "connect":
            return "tcp-connect"
        if self.raw_sockets:
            return "tcp-syn"
        if wanted == "syn" and not self._warned_no_raw:
            self._warned_no_raw = True
            log.warning("scan_method 'syn' needs root or CAP_NET_RAW; using a connect scan instead")
        return "tcp-connect"

    # -- port scanning --------------------------------------------------------------------
    async def port_states(self, address: str, ports: Sequence[int]) -> tuple[str, list[tuple[PortState, float | None]]]:
        """States of `ports` on one address, probed in random order; returns (method, states in input order)."""
        method = self.port_scan_method
        probe = self.syn_state if method == "tcp-syn" else self.tcp_state
        order = list(range(len(ports)))
        random.shuffle(order)
        answers = await asyncio.gather(*(probe(address, ports[i]) for i in order))
        states: list[tuple[PortState, float | None]] = [(PortState.FILTERED, None)] * len(ports)
        for i, answer in zip(order, answers, strict=True):
            states[i] = answer
        return method, states

    def _syn_engine(self) -> SynScanner:
        if self._syn is None:
            self._syn = SynScanner(self.check_address, on_rtt=lambda address, ms: self.rtt.sample(address, ms / 1000))
        return self._syn

    async def syn_state(self, address: str, port: int) -> tuple[PortState, float | None]:
        """Half-open scan of one port: SYN-ACK open, RST closed, silence (after retries) filtered.

        No connection slot is held while a SYN is outstanding: a target that drops everything costs its
        timeouts once, in parallel, not once per slot. Each SYN takes a place among the scanner's SYNs in flight
        (a global cap sized to its receive buffer) and is then admitted by the packet rate limits. A wait during
        which our receive socket dropped packets is not a silence: the SYN is sent again (up to `LOST_RESENDS`
        times beyond the retries), and a port that only ever got such waits is UNKNOWN, never filtered."""
        scanner = self._syn_engine()
        silences = lost = 0
        while silences <= self.settings.retries:
            await scanner.acquire(address)
            try:
                await self.admit_packet(address)
                answer = await scanner.probe(address, port, self.rtt.timeout(address))
            except AnswerLost:
                lost += 1
                if lost > LOST_RESENDS:
                    return PortState.UNKNOWN, None
                continue
            finally:
                scanner.release()
            if answer is not None:
                self.breaker.record_success(address)
                return PortState(answer[0]), answer[1]
            silences += 1
        return PortState.FILTERED, None

    # -- ICMP -----------------------------------------------------------------------------
    async def icmp_echo(self, address: str) -> float | None:
        """Round-trip time (ms) of an ICMP echo with retries; None if unanswered.

        Raises RawSocketsUnavailableError without raw-socket rights."""
        if not self.raw_sockets:
            raise capabilities.RawSocketsUnavailableError("ICMP echo needs raw-socket rights (root or CAP_NET_RAW)")
        if self._icmp is None:
            self._icmp = IcmpPinger(self.check_address)
        # The first echo waits as long as the estimate allows (borrowed from other targets if this one was never
        # measured); retries wait the full initial timeout, and a late reply to an earlier echo still counts.
        timeouts = [self.rtt.timeout(address)] + [self.rtt.timeout(address, borrow=False)] * self.settings.retries
        rtt = await self._icmp.ping_retrying(address, timeouts, lambda: self.admit_packet(address))
        if rtt is not None:
            self.rtt.sample(address, rtt / 1000)  # each echo has its own sequence number: never ambiguous
        return rtt

    @property
    def raw_packets_sent(self) -> int:
        return (self._syn.packets_sent if self._syn else 0) + (self._icmp.packets_sent if self._icmp else 0)

    def raw_receive_stats(self) -> dict[str, int]:
        """The SYN receiver's health: the kernel's drop count, SYNs resent because of it, the in-flight cap."""
        syn = self._syn
        if syn is None:
            return {"receive_drops": 0, "lost": 0, "in_flight_limit": 0, "peak_in_flight": 0}
        return {
            "receive_drops": syn.receive_drops,
            "lost": syn.lost,
            "in_flight_limit": syn.in_flight_limit,
            "peak_in_flight": syn.peak_in_flight,
        }

    # -- TCP ------------------------------------------------------------------------------
    async def tcp_state(self, address: str, port: int) -> tuple[PortState, float | None]:
        """Connect scan of one port: open, closed (refused) or filtered (no answer), with retries."""
        state, rtt = PortState.FILTERED, None
        for _attempt in range(1 + self.settings.retries):
            state, rtt = await self._tcp_once(address, port)
            if state != PortState.FILTERED:
                break
        return state, rtt

    async def _tcp_once(self, address: str, port: int) -> tuple[PortState, float | None]:
        async with self._conn_slots[address]:
            await self.admit(address)
            start = time.perf_counter()
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(address, port), self.settings.connect_timeout
                )
            except ConnectionRefusedError:
                return PortState.CLOSED, (time.perf_counter() - start) * 1000
            except TimeoutError:
                return PortState.FILTERED, None
            except OSError as exc:
                if exc.errno in _UNREACHABLE:
                    return PortState.FILTERED, None
                return PortState.CLOSED, (time.perf_counter() - start) * 1000
            rtt = handshake_rtt_ms(writer.get_extra_info("socket")) or (time.perf_counter() - start) * 1000
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            return PortState.OPEN, rtt

    async def open_tls(
        self,
        address: str,
        port: int,
        context: ssl.SSLContext,
        server_hostname: str | None,
        inspect: Callable[[ssl.SSLObject], T],
    ) -> T:
        """Complete a TLS handshake, run `inspect` on the live session, then close the connection.

        Session facts (certificate, protocol, cipher) are read before the close: once a server has
        answered close_notify, `getpeercert()` raises "handshake not done yet"."""
        async with self._conn_slots[address]:
            await self.admit(address)
            _, writer = await self._connect(address, port, context, server_hostname or None)
            try:
                sslobj = writer.get_extra_info("ssl_object")
                if sslobj is None:
                    raise ssl.SSLError("no TLS session was established")
                return inspect(sslobj)
            finally:
                writer.close()
                with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
                    await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def open_stream(
        self,
        address: str,
        port: int,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """An admitted TCP (or TLS) stream for protocol probes; the caller closes the writer."""
        async with self._conn_slots[address]:
            await self.admit(address)
            return await self._connect(address, port, context, server_hostname if context else None)

    async def _connect(
        self, address: str, port: int, context: ssl.SSLContext | None, server_hostname: str | None
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """TCP within `connect_timeout`, then (with a context) the TLS handshake within `tls_timeout`: an address
        that drops everything costs the connect timeout alone, not both (TimeoutError either way)."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), self.settings.connect_timeout)
        if context is None:
            return reader, writer
        try:
            await asyncio.wait_for(
                writer.start_tls(context, server_hostname=server_hostname), self.settings.tls_timeout
            )
        except BaseException:
            writer.transport.abort()
            raise
        return reader, writer

    async def udp_exchange(self, address: str, port: int, payload: bytes, timeout: float | None = None) -> bytes:
        """Send one datagram and wait for one answer (DNS and similar); TimeoutError if none comes."""
        answer, _ = await self.udp_exchange_timed(address, port, payload, timeout)
        return answer

    async def udp_exchange_timed(
        self, address: str, port: int, payload: bytes, timeout: float | None = None
    ) -> tuple[bytes, float]:
        """`udp_exchange`, plus the round-trip time in ms: from the send, after admission, to the kernel's
        receive stamp of the answer (so neither the rate limiter's wait nor event-loop delays count)."""
        await self.admit(address)
        self.check_address(address)
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        answer: asyncio.Future[tuple[bytes, int]] = loop.create_future()
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            enable_timestamps(sock)
            sock.connect((address, port))  # connected: the kernel passes on datagrams from this peer only

            def readable() -> None:
                try:
                    data, ancdata, _flags, _peer = sock.recvmsg(65535, _UDP_ANC_BYTES)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:  # e.g. ICMP port unreachable: ConnectionRefusedError
                    if not answer.done():
                        answer.set_exception(exc)
                    return
                if not answer.done():
                    answer.set_result((data, received_at(ancdata)))

            loop.add_reader(sock.fileno(), readable)
            try:
                sent_ns = wall_ns()
                sock.send(payload)
                data, arrived_ns = await asyncio.wait_for(answer, timeout or self.settings.connect_timeout)
            finally:
                loop.remove_reader(sock.fileno())
        return data, elapsed_ms(sent_ns, arrived_ns)

    # -- HTTP -----------------------------------------------------------------------------
    def http_session(self) -> aiohttp.ClientSession:
        """One shared session. Its resolver refuses out-of-scope names and addresses, and a request hook
        refuses out-of-scope IP literals, which aiohttp connects to without asking the resolver."""
        if self._session is None:
            # imported when a probe makes a session: the settings import this module only for the probes' options
            import aiohttp

            from sentinel.collectors.scoped_resolver import ScopedResolver

            connector = aiohttp.TCPConnector(
                resolver=ScopedResolver(self),
                limit=self.settings.max_connections,
                ssl=False,
                force_close=True,
            )
            trace = aiohttp.TraceConfig()
            trace.on_request_start.append(self._check_request)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.user_agent},
                auto_decompress=True,
                trace_configs=[trace],
            )
        return self._session

    async def _check_request(
        self, _session: aiohttp.ClientSession, _ctx: object, params: aiohttp.TraceRequestStartParams
    ) -> None:
        host = (params.url.host or "").strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not self.scope.allows_name(host):
                raise OutOfScope(f"host name {host or '(none)'} is outside the declared scope") from None
            return  # the scoped resolver checks the addresses it resolves to
        self.check_address(host)

    async def close(self) -> None:
        for engine in (self._syn, self._icmp):
            if engine is not None:
                engine.close()
        self._syn = self._icmp = None
        if self._session is not None:
            await self._session.close()
            self._session = None


def handshake_rtt_ms(sock: Any) -> float | None:
    """The kernel's RTT of a just-connected TCP socket (TCP_INFO tcpi_rtt: right after the handshake it is the
    SYN to SYN-ACK sample, timed in softirq), in ms; None where the kernel does not tell."""
    if sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 104)
    except (OSError, AttributeError):
        return None
    if len(info) < _TCPI_RTT_OFFSET + 4:
        return None
    (micros,) = struct.unpack_from("=I", info, _TCPI_RTT_OFFSET)  # native byte order, as the kernel wrote it
    return int(micros) / 1000 if micros else None


def jsonable_headers(headers: Any, limit: int = 64) -> dict[str, str]:
    """Response headers as a bounded dict with lowercase names (repeated headers joined)."""
    out: dict[str, str] = {}
    for name, value in list(headers.items())[:limit]:
        key = name.lower()
        out[key] = f"{out[key]}, {value}"[:1024] if key in out else str(value)[:1024]
    return out
