"""ICMP / ICMPv6 echo over raw sockets, with round-trip times; matched by identifier and sequence number.

The round-trip time runs from the stamp taken right at `sendto` to the kernel's receive stamp of the reply
(SO_TIMESTAMPNS), as ping measures it: time the event loop spends elsewhere is not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import socket
from collections.abc import Awaitable, Callable, Sequence

from sentinel.collectors.rawscan import (
    elapsed_ms,
    icmp_echo_request,
    ipv4_payload,
    open_raw,
    parse_echo_reply,
    recv_stamped,
    send_stamped,
)

_PAYLOAD = b"sentinel-echo".ljust(48, b".")


class IcmpPinger:
    """Echo requests out, echo replies in; `guard(address)` raises when an address must not be probed."""

    def __init__(self, guard: Callable[[str], None]) -> None:
        self._guard = guard
        self._ident = int.from_bytes(os.urandom(2), "big")
        self._seq = itertools.count(int.from_bytes(os.urandom(2), "big"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socks: dict[int, socket.socket] = {}
        #: (address, sequence) -> (reply future, send stamp in ns)
        self._waiting: dict[tuple[str, int], tuple[asyncio.Future[float], list[int]]] = {}
        self.packets_sent = 0

    def _socket(self, v6: bool) -> socket.socket:
        family = socket.AF_INET6 if v6 else socket.AF_INET
        sock = self._socks.get(family)
        if sock is None:
            self._loop = asyncio.get_running_loop()
            sock = open_raw(family, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
            self._loop.add_reader(sock.fileno(), self._drain, sock, v6)
            self._socks[family] = sock
        return sock

    async def ping(self, address: str, timeout: float) -> float | None:
        """Round-trip time in milliseconds of one echo, or None when no reply came in time."""
        return await self.ping_retrying(address, [timeout])

    async def ping_retrying(
        self, address: str, timeouts: Sequence[float], admit: Callable[[], Awaitable[None]] | None = None
    ) -> float | None:
        """One echo per timeout until a reply comes (`admit()` before each send). A late reply to an earlier
        echo still counts while a retry waits: each echo has its own sequence number, so its RTT is exact."""
        address = str(ipaddress.ip_address(address))
        v6 = ":" in address
        sock = self._socket(v6)
        assert self._loop is not None
        future: asyncio.Future[float] = self._loop.create_future()
        keys: list[tuple[str, int]] = []
        target: tuple[str, int] | tuple[str, int, int, int] = (address, 0, 0, 0) if v6 else (address, 0)
        try:
            for timeout in timeouts:
                if admit is not None:
                    await admit()
                self._guard(address)  # defence in depth, right before the send
                seq = next(self._seq) & 0xFFFF
                sent = [0]
                keys.append((address, seq))
                self._waiting[keys[-1]] = (future, sent)
                try:
                    sent[0] = await send_stamped(
                        self._loop, sock, icmp_echo_request(self._ident, seq, _PAYLOAD, v6), target
                    )
                except OSError as exc:
                    if exc.errno in (101, 112, 113):  # unreachable: no reply will ever come
                        return None
                    raise
                self.packets_sent += 1
                try:
                    return await asyncio.wait_for(asyncio.shield(future), timeout)
                except TimeoutError:
                    continue
            return None
        finally:
            for key in keys:
                self._waiting.pop(key, None)
            future.cancel()

    def _drain(self, sock: socket.socket, v6: bool) -> None:
        while True:
            try:
                packet, peer, arrived_ns = recv_stamped(sock, 2048)
            except OSError:
                return
            if v6:
                source, message = str(ipaddress.ip_address(peer[0].split("%")[0])), packet
            else:
                parsed = ipv4_payload(packet)
                if parsed is None:
                    continue
                source, message = parsed[0], parsed[2]
            reply = parse_echo_reply(message, v6)
            if reply is None or reply[0] != self._ident:
                continue
            entry = self._waiting.get((source, reply[1]))
            if entry is not None and entry[1][0] and not entry[0].done():
                entry[0].set_result(elapsed_ms(entry[1][0], arrived_ns))

    def close(self) -> None:
        for sock in self._socks.values():
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()
