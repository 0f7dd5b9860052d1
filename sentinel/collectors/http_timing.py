"""Timing of one HTTP request through aiohttp trace hooks, so a probe's latency is the site's, not Sentinel's queues.

Hooks on the shared session stamp the start of the connection attempt (after the rate limiter, the
connection-pool queue and name resolution: aiohttp fires `on_connection_create_start` once a connection slot is
free, and `on_dns_resolvehost_end` inside it), the connection made (TCP, and the TLS handshake for https) and the
response headers; the probe stamps the end of the body read. The total is what curl's
`time_total - time_namelookup` measures for one request (no redirects followed). What remains inside it is the
event loop's own delay in running the callbacks while the request is in flight.

No import of `network`, so ScopedNetwork.http_session() can add `timing_trace_config()` to its session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp


@dataclass(slots=True)
class RequestTiming:
    """perf_counter stamps of one request; None where the request never got there."""

    start: float | None = None  # connection attempt starts (after admission, pool queue and DNS)
    connected: float | None = None  # TCP connection (and TLS handshake) made
    headers: float | None = None  # response headers received
    end: float | None = None  # body read (set by the caller)

    def since_start_ms(self, stamp: float | None) -> float | None:
        if self.start is None or stamp is None:
            return None
        return round(max(0.0, stamp - self.start) * 1000, 2)

    @property
    def total_ms(self) -> float | None:
        return self.since_start_ms(self.end)

    def fields(self) -> dict[str, float | None]:
        """`timing.connect_ms`, `timing.headers_ms` (both from the start of the connection attempt)."""
        return {
            "timing.connect_ms": self.since_start_ms(self.connected),
            "timing.headers_ms": self.since_start_ms(self.headers),
        }


def _timing(ctx: SimpleNamespace) -> RequestTiming | None:
    timing = getattr(ctx, "trace_request_ctx", None)
    return timing if isinstance(timing, RequestTiming) else None


async def _on_start(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    # Also fired at the end of name resolution (inside connection creation): the clock restarts there, so
    # neither DNS nor the wait for a free connection is counted.
    if (timing := _timing(ctx)) is not None:
        timing.start = time.perf_counter()


async def _on_connected(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    if (timing := _timing(ctx)) is not None:
        timing.connected = time.perf_counter()


async def _on_reused(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    if (timing := _timing(ctx)) is not None:
        timing.start = timing.connected = time.perf_counter()


async def _on_headers(_s: aiohttp.ClientSession, ctx: SimpleNamespace, _p: object) -> None:
    if (timing := _timing(ctx)) is not None:
        timing.headers = time.perf_counter()


class TimingTrace(aiohttp.TraceConfig):
    def __init__(self) -> None:
        super().__init__()
        self.on_connection_create_start.append(_on_start)
        self.on_dns_resolvehost_end.append(_on_start)
        self.on_connection_create_end.append(_on_connected)
        self.on_connection_reuseconn.append(_on_reused)
        self.on_request_end.append(_on_headers)
        self.freeze()


def timing_trace_config() -> TimingTrace:
    """A frozen trace config that times requests carrying a RequestTiming as `trace_request_ctx`."""
    return TimingTrace()
