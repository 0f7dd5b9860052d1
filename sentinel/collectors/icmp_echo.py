"""ICMP / ICMPv6 echo over raw sockets, with round-trip times; matched by identifier and sequence number."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import socket
import time
from collections.abc import Callable

from sentinel.collectors.rawscan import icmp_echo_request, ipv4_payload, open_raw, parse_echo_reply

_PAYLOAD = b"sentinel-echo".ljust(48, b".")


class IcmpPinger:
    """Echo requests out, echo replies in; `guard(address)` raises when an address must not be probed."""

    def __init__(self, guard: Callable[[str], None]) -> None:
        self._guard = guard
        self._ident = int.from_bytes(os.urandom(2), "big")
        self._seq = itertools.count(int.from_bytes(os.urandom(2), "big"))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socks: dict[int, socket.socket] = {}
        self._waiting: dict[tuple[str, int], tuple[asyncio.Future[float], float]] = {}
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
        address = str(ipaddress.ip_address(address))
        self._guard(address)
        v6 = ":" in address
        sock = self._socket(v6)
        assert self._loop is not None
        seq = next(self._seq) & 0xFFFF
        key = (address, seq)
        future: asyncio.Future[float] = self._loop.create_future()
        self._waiting[key] = (future, time.perf_counter())
        try:
            target: tuple[str, int] | tuple[str, int, int, int] = (address, 0, 0, 0) if v6 else (address, 0)
            try:
                await self._loop.sock_sendto(sock, icmp_echo_request(self._ident, seq, _PAYLOAD, v6), target)
            except OSError as exc:
                if exc.errno in (101, 112, 113):  # unreachable: no reply will ever come
                    return None
                raise
            self.packets_sent += 1
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                return None
        finally:
            self._waiting.pop(key, None)

    def _drain(self, sock: socket.socket, v6: bool) -> None:
        while True:
            try:
                packet, peer = sock.recvfrom(2048)
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
            if entry is not None and not entry[0].done():
                entry[0].set_result((time.perf_counter() - entry[1]) * 1000)

    def close(self) -> None:
        for sock in self._socks.values():
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(sock.fileno())
            sock.close()
        self._socks.clear()
