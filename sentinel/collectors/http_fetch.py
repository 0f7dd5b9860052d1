"""Bounded, scope-checked HTTP GETs for the HTTP probes (http, http_security, web_integrity), and what they share:
request timing, the TLS context, and how a failed request is named.

Each hop is resolved and admitted through ScopedNetwork before it is sent, exactly as in `http_poll`;
a redirect to an out-of-scope host is recorded and not followed. Bodies are read up to a byte limit
(a hostile server cannot make us read more), and each answer's status feeds the target's circuit
breaker so 429/5xx bursts back off.
Each request is one connection of `http_wire` (kernel-stamped, so timings hold on a busy event loop); request
timing is in `http_timing`.
"""

from __future__ import annotations

import functools
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from sentinel.collectors.http_timing import WireClock
from sentinel.collectors.http_wire import HttpProtocolError, TlsHandshakeError, WirePool, WireResponse, wire_get
from sentinel.collectors.network import CircuitOpen, OutOfScope, ScopedNetwork, jsonable_headers

if TYPE_CHECKING:
    import aiohttp

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_COOKIES = 32
REDIRECT_BODY_BYTES = 65_536  # a redirect's body is read (bounded) so its timing covers the whole answer, as curl's
MAX_REASON_CHARS = 300


@functools.cache
def fetch_errors() -> tuple[type[Exception], ...]:
    """What a request that got no HTTP answer raises (the probes turn these into error observations)."""
    import aiohttp  # imported when a probe runs: the settings import this module only for the probes' options

    return (aiohttp.ClientError, TimeoutError, OSError)


# -- TLS -----------------------------------------------------------------------------------------------------------
@functools.cache
def http_tls_context() -> ssl.SSLContext:
    """The HTTP probes' client context: it talks to any server a monitor must read, TLS 1.0 and old ciphers
    included, and verifies no certificate. The tls and tls_scan probes judge protocols and certificates; the HTTP
    probes must still see the headers and content of a site that has those problems."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:  # an OpenSSL without security levels
        ctx.set_ciphers("DEFAULT")
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


# -- status ------------------------------------------------------------------------------------------------------
def status_facts(status: int) -> dict[str, str | bool | None]:
    """What an HTTP status says, as rule-readable fields (None: the status cannot tell).

    `http.ok`: a good answer (2xx/3xx) or an error (4xx/5xx); None for 429, where the site throttled the monitor
    and said nothing about the page. `http.server_error` / `http.client_error`: true for a 5xx / a 4xx (429 aside),
    false for a good answer, None for the other error class, so that a 404 never reads as "the 5xx is fixed"."""
    good = 200 <= status < 400
    if good:
        ok: bool | None = True
    elif status == 429 or status < 200:
        ok = None
    else:
        ok = False
    return {
        "status_class": f"{status // 100}xx",
        "http.ok": ok,
        "http.server_error": True if status >= 500 else (False if good else None),
        "http.client_error": True if 400 <= status < 500 and status != 429 else (False if good else None),
    }


# -- failures ------------------------------------------------------------------------------------------------------
def describe_failure(exc: BaseException) -> tuple[str, str]:
    """(error_kind, reason) for a request that got no HTTP answer.

    `circuit_open`: backed off, nothing sent; `tls_handshake`: the TCP connection was made and the TLS handshake
    failed; `protocol`: something answered that is not readable HTTP/1.1; `dns`; `timeout`; `connect`."""
    import aiohttp  # at the first failure, not when the settings import this module for the probes' options

    if isinstance(exc, CircuitOpen):
        return "circuit_open", f"not probed: {exc}"[:MAX_REASON_CHARS]
    if isinstance(exc, TlsHandshakeError | aiohttp.ClientSSLError):
        cause = exc.__cause__ or exc
        return "tls_handshake", f"TLS handshake failed: {cause}"[:MAX_REASON_CHARS]
    if isinstance(exc, HttpProtocolError):
        return "protocol", str(exc)[:MAX_REASON_CHARS]
    if isinstance(exc, TimeoutError):
        return "timeout", "timed out"
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or "cannot resolve" in str(exc):
        return "dns", (str(exc) or type(exc).__name__)[:MAX_REASON_CHARS]
    return "connect", (str(exc) or type(exc).__name__)[:MAX_REASON_CHARS]


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # the URL that gave the final answer
    status: int
    headers: dict[str, str]  # lower-case names, repeated headers joined (jsonable_headers)
    set_cookies: tuple[str, ...]  # every Set-Cookie value seen on the way, in order (bounded)
    body: bytes
    truncated: bool
    redirects: tuple[str, ...] = ()
    out_of_scope_redirect: str | None = None  # where a redirect pointed that was not followed
    latency_ms: float | None = None  # the first request, timed as http_timing says


async def scoped_get(
    net: ScopedNetwork,
    url: str,
    *,
    max_bytes: int,
    timeout: aiohttp.ClientTimeout,
    max_redirects: int = 0,
    pool: WirePool | None = None,
) -> Fetched:
    """GET `url`, following at most `max_redirects` in-scope redirects. `timeout.total` bounds each request,
    `timeout.sock_connect` its connection. With `pool`, requests reuse the job's keep-alive connections (and
    `latency_ms` is None when the first one did).

    Raises OutOfScope when the first hop is out of scope, TimeoutError / OSError (TlsHandshakeError,
    HttpProtocolError, ...) when the target does not answer; the caller turns those into error observations.
    """
    redirects: list[str] = []
    cookies: list[str] = []
    first = WireClock()
    total = timeout.total or 30.0
    connect = min(timeout.sock_connect or total, total)
    for hop in range(max_redirects + 1):
        address = (await net.resolve(urlsplit(url).hostname or ""))[0]
        await net.admit(address)
        clock = first if hop == 0 else WireClock()
        async with wire_get(
            net,
            address,
            url,
            clock=clock,
            tls_context=http_tls_context(),
            connect_timeout=connect,
            total_timeout=total,
            pool=pool,
        ) as resp:
            net.report_http_status(address, resp.status, resp.headers.get("Retry-After"))
            cookies.extend(resp.headers.getall("Set-Cookie", [])[: MAX_COOKIES - len(cookies)])
            location = resp.headers.get("Location")
            if resp.status in REDIRECT_STATUSES and location and hop < max_redirects:
                target = urljoin(url, location)
                try:
                    await net.resolve(urlsplit(target).hostname or "")
                except OutOfScope:
                    return await _final(resp, url, cookies, redirects, max_bytes, first, out_of_scope=target)
                if hop == 0:  # read (bounded) so the first request's timing covers its whole answer, as curl's
                    await resp.read(REDIRECT_BODY_BYTES)
                redirects.append(url)
                url = target
                continue
            return await _final(resp, url, cookies, redirects, max_bytes, first)
    raise AssertionError("unreachable: the last hop always returns")


async def _final(
    resp: WireResponse,
    url: str,
    cookies: list[str],
    redirects: list[str],
    max_bytes: int,
    first: WireClock,
    out_of_scope: str | None = None,
) -> Fetched:
    body, truncated = await resp.read(max_bytes)
    return Fetched(
        url=url,
        status=resp.status,
        headers=jsonable_headers(resp.headers),
        set_cookies=tuple(cookies),
        body=body,
        truncated=truncated,
        redirects=tuple(redirects),
        out_of_scope_redirect=out_of_scope,
        latency_ms=first.timing().total_ms,
    )
