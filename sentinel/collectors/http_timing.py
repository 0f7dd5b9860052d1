"""Timing of one HTTP request from kernel stamps, so a probe's latency is the site's whatever the event loop is doing.

Issue 11 defect 5: stamps taken in Python (aiohttp trace hooks) are taken when a saturated event loop gets round to
them, so in a full sweep they read 100x curl. Here the clock is made of events the loop cannot delay:

- start: a wall-clock stamp right before `connect()` (after admission, the connection-slot queue and DNS);
- the TCP handshake: the kernel's own round-trip sample of it (`TCP_INFO.tcpi_rtt`, microseconds; before any data
  has moved it is the SYN/SYN-ACK sample alone);
- each send: a stamp taken right before the `send()` syscall;
- each receive: the kernel's receive stamp (SO_TIMESTAMPNS via `recvmsg`) of the last segment that read returned.

On that timeline, time that ends at a receive is the network's and the server's (a request travelling and being
answered, a body streaming in); time that ends at a send is the client's turn (its CPU and its event loop's
queue) and is left out, as curl, whose client turn is a few microseconds, has none to speak of. The sum is what
curl's `time_total - time_namelookup` measures for the same request.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

from sentinel.collectors.rawscan import wall_ns

_TCPI_RTT_OFFSET = 68  # struct tcp_info: 8 bytes of u8 fields, then u32s from tcpi_rto; tcpi_rtt is the 16th
_TCP_INFO_BYTES = 104


def tcp_handshake_rtt_us(sock: socket.socket) -> int | None:
    """The kernel's smoothed RTT of a just-connected socket (µs): its SYN/SYN-ACK sample. None if unknown (not
    Linux, or no sample, e.g. after a retransmitted SYN)."""
    tcp_info = getattr(socket, "TCP_INFO", None)
    if tcp_info is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, _TCP_INFO_BYTES)
    except OSError:
        return None
    if len(raw) < _TCPI_RTT_OFFSET + 4:
        return None
    rtt = int(struct.unpack_from("@I", raw, _TCPI_RTT_OFFSET)[0])
    return rtt or None


@dataclass(frozen=True, slots=True)
class RequestTiming:
    """One request's figures, ms from the start of the connection attempt; None where it never got there."""

    connect_ms: float | None = None  # TCP connection (and TLS handshake) made
    headers_ms: float | None = None  # response headers received
    total_ms: float | None = None  # the last body byte read

    def fields(self) -> dict[str, float | None]:
        """`timing.connect_ms`, `timing.headers_ms`."""
        return {"timing.connect_ms": self.connect_ms, "timing.headers_ms": self.headers_ms}


@dataclass(slots=True)
class WireClock:
    """The send/receive timeline of one connection (wall-clock ns, the clock of the kernel's receive stamps)."""

    start_ns: int | None = None
    established_ns: int | None = None  # TCP handshake done (start + the kernel's RTT sample)
    handshake_ns: int | None = None  # TLS handshake done (the receive that completed it); = established for http
    headers_ns: int | None = None  # the receive that completed the response headers
    end_ns: int | None = None  # the receive that delivered the last body byte read
    last_rx_ns: int | None = None
    secured: bool = False  # the TLS handshake completed
    _events: list[tuple[int, bool]] = field(default_factory=list)  # (stamp, is_send)

    def starting(self) -> None:
        self.start_ns = wall_ns()

    def established(self, rtt_us: int | None) -> None:
        assert self.start_ns is not None
        # Without a kernel sample, the wake-up time: an upper bound that includes the loop's delay.
        self.established_ns = self.start_ns + rtt_us * 1000 if rtt_us else wall_ns()
        self.handshake_ns = self.established_ns

    def sent(self, stamp_ns: int) -> None:
        self._events.append((stamp_ns, True))

    def received(self, stamp_ns: int) -> None:
        self._events.append((stamp_ns, False))
        self.last_rx_ns = stamp_ns if self.last_rx_ns is None else max(self.last_rx_ns, stamp_ns)

    def elapsed_ms(self, until_ns: int | None) -> float | None:
        """Network and server time from the start to the event stamped `until_ns` (see the module docstring)."""
        if self.start_ns is None or self.established_ns is None or until_ns is None:
            return None
        total = max(0, self.established_ns - self.start_ns)
        previous = self.established_ns  # the SYN-ACK: what follows it is the client's turn
        for stamp, is_send in sorted(self._events):
            if stamp > until_ns:
                break
            if not is_send and stamp > previous:
                total += stamp - previous
            previous = max(previous, stamp)
        return round(total / 1e6, 2)

    def timing(self) -> RequestTiming:
        return RequestTiming(
            connect_ms=self.elapsed_ms(self.handshake_ns),
            headers_ms=self.elapsed_ms(self.headers_ns),
            total_ms=self.elapsed_ms(self.end_ns),
        )
