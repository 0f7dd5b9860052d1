"""Stateless half-open (SYN) port scanning, masscan style.

Per address family, one raw socket sends (a BPF filter keeps its receive queue empty) and a separate one
receives, with a BPF filter that lets through only segments to our source port. Each SYN carries a sequence
number derived from a secret and (address, port), so an answer is recognised by its acknowledgement number
alone: a stale or forged segment does not match. A SYN-ACK means open (the kernel, which
has no connection on our reserved source port, answers it with a RST: nothing stays half-open), a RST
means closed, silence until the timeout means filtered.

Round-trip times run from the send stamp taken right at `sendto` to the kernel's receive stamp of the answer
(SO_TIMESTAMPNS), so a busy event loop does not inflate them. Answers that come after their waiter gave up
are still measured (`on_rtt`): the adaptive timeouts learn a slow target's real RTT from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import os
import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from sentinel.collectors.rawscan import (
    DROP_ALL,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    elapsed_ms,
    ipv4_payload,
    open_raw,
    parse_tcp,
    recv_stamped,
    send_stamped,
    source_address,
    tcp_port_filter,
    tcp_syn,
    wall_ns,
)

#: a SYN answer: "open" or "closed", and the round-trip time in milliseconds
SynAnswer = tuple[str, float]
_UNREACHABLE_ERRNOS = {101, 113, 112}  # ENETUNREACH, EHOSTUNREACH, EHOSTDOWN
_SENDS_KEPT = 65536  # (address, port) send stamps remembered for late answers


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[SynAnswer]
    sent_ns: int


class SynScanner:
    """Sends SYNs and matches their answers. `guard(address)` raises when an address must not be probed;
    `on_rtt(address, ms)` receives every unambiguous RTT sample (an answer to the only SYN sent to that port)."""

    def __init__(self, guard: Callable[[str], None], on_rtt: Callable[[str, float], None] | None = None) -> None:
        self._guard = guard
        self._on_rtt = on_rtt
        #: (address, port) -> [send stamp of the last SYN, SYNs sent]: late answers and Karn's rule
        self._sends: OrderedDict[tuple[str, int], list[int]] = OrderedDict()
        self._secret = os.urandom(16)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reserve: list[socket.socket] = []
        self._sport = 0
        self._senders: dict[int, socket.socket] = {}
        self._receivers: dict[int, socket.socket] = {}
        self._sources: dict[str, bytes] = {}
        self._waiting: dict[tuple[str, int], list[_Waiter]] = {}
        #: SYN segments handed to the kernel (tests and benchmarks read it)
        self.packets_sent = 0

    @property
    def source_port(self) -> int:
        return self._sport

    def _start(self) -> None:
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._sport = self._reserve_port()

    def _reserve_port(self) -> int:
        """Bind (never listen on) a TCP port so no local connection uses it and the kernel RSTs SYN-ACKs to it."""
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        v4.bind(("0.0.0.0", 0))  # a reservation only: it never listens or sends
        port = int(v4.getsockname()[1])
        self._reserve.append(v4)
        with contextlib.suppress(OSError):
            v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                v6.bind(("::", port))
            except OSError:
                v6.close()
                raise
            self._reserve.append(v6)
        return port

    def _socket(self, family: int) -> socket.socket:
        """The sending socket of a family, opening it and its receiver on first use."""
        sender = self._senders.get(family)
        if sender is None:
            assert self._loop is not None
            v6 = family == socket.AF_INET6
            receiver = open_raw(family, socket.IPPROTO_TCP, tcp_port_filter(self._sport, v6))
            self._loop.add_reader(receiver.fileno(), self._drain, receiver, v6)
            self._receivers[family] = receiver
            sender = self._senders[family] = open_raw(family, socket.IPPROTO_TCP, DROP_ALL)
        return sender

    def cookie(self, address: str, port: int) -> int:
        digest = hashlib.blake2b(f"{address}|{port}|{self._sport}".encode(), key=self._secret, digest_size=4)
        return int.from_bytes(digest.digest(), "big")

    async def probe(self, address: str, port: int, timeout: float) -> SynAnswer | None:
        """Send one SYN and wait for its answer; None when nothing came back in time (filtered)."""
        self._start()
        assert self._loop is not None
        address = str(ipaddress.ip_address(address))
        self._guard(address)  # defence in depth: ScopedNetwork admitted it, check again right before sending
        v6 = ":" in address
        sock = self._socket(socket.AF_INET6 if v6 else socket.AF_INET)
        if v6:
            segment = tcp_syn(self._sport, port, self.cookie(address, port))
            target: tuple[str, int] | tuple[str, int, int, int] = (address, 0, 0, 0)
        else:
            source = self._sources.get(address)
            if source is None:
                try:
                    source = self._sources[address] = socket.inet_aton(source_address(address))
                except OSError as exc:  # no route: like a connect scan, the port reads as filtered
                    if exc.errno in _UNREACHABLE_ERRNOS:
                        return None
                    raise
            segment = tcp_syn(self._sport, port, self.cookie(address, port), source, socket.inet_aton(address))
            target = (address, 0)
        waiter = _Waiter(self._loop.create_future(), 0)
        key = (address, port)
        self._waiting.setdefault(key, []).append(waiter)
        try:
            self._remember(key, wall_ns())  # before the send: the answer may be read before this coroutine resumes
            try:
                waiter.sent_ns = await send_stamped(self._loop, sock, segment, target)
            except OSError as exc:
                if exc.errno in _UNREACHABLE_ERRNOS:
                    return None
                raise
            self.packets_sent += 1
            entry = self._sends.get(key)
            if entry is not None:
                entry[0] = waiter.sent_ns
            try:
                return await asyncio.wait_for(waiter.future, timeout)
            except TimeoutError:
                return None
        finally:
            waiters = self._waiting.get(key)
            if waiters is not None:
                with contextlib.suppress(ValueError):
                    waiters.remove(waiter)
                if not waiters:
                    del self._waiting[key]

    def _remember(self, key: tuple[str, int], sent_ns: int) -> None:
        entry = self._sends.get(key)
        if entry is None:
            if len(self._sends) >= _SENDS_KEPT:
                self._sends.popitem(last=False)
            self._sends[key] = [sent_ns, 1]
        else:
            entry[0], entry[1] = sent_ns, entry[1] + 1
            self._sends.move_to_end(key)

    def _drain(self, sock: socket.socket, v6: bool) -> None:
        while True:
            try:
                packet, peer, arrived_ns = recv_stamped(sock, 4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if v6:
                answer = parse_tcp(str(ipaddress.ip_address(peer[0].split("%")[0])), packet)
            else:
                parsed = ipv4_payload(packet)
                answer = parse_tcp(parsed[0], parsed[2]) if parsed and parsed[1] == socket.IPPROTO_TCP else None
            if answer is None or answer.dport != self._sport:
                continue
            key = (answer.source, answer.sport)
            sent = self._sends.get(key)
            if sent is None or answer.ack != (self.cookie(answer.source, answer.sport) + 1) & 0xFFFFFFFF:
                continue  # not an answer to one of our SYNs (or a forged one): ignore it
            if answer.flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK:
                state = "open"
            elif answer.flags & TCP_RST:
                state = "closed"
            else:
                continue
            if sent[1] == 1:  # Karn: only the answer to a lone SYN is an unambiguous sample
                sent[1] = 0  # and only once: a duplicate answer is not a new measurement
                if self._on_rtt is not None:
                    self._on_rtt(answer.source, elapsed_ms(sent[0], arrived_ns))
            for waiter in self._waiting.get(key, ()):
                if not waiter.future.done():
                    waiter.future.set_result((state, elapsed_ms(waiter.sent_ns, arrived_ns)))

    def close(self) -> None:
        self._sends.clear()
        for sock in self._receivers.values():
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sock.fileno())
            sock.close()
        for sock in self._senders.values():
            sock.close()
        self._receivers.clear()
        self._senders.clear()
        for sock in self._reserve:
            sock.close()
        self._reserve.clear()
