"""Bounded, scope-checked HTTP GETs for the probes that read page content (http_security, web_integrity).

Each hop is resolved and admitted through ScopedNetwork before it is sent, exactly as in `http_poll`;
a redirect to an out-of-scope host is recorded and not followed. Bodies are read up to a byte limit
(a hostile server cannot make us read more), and each answer's status feeds the target's circuit
breaker so 429/5xx bursts back off.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

from sentinel.collectors.network import OutOfScope, ScopedNetwork, jsonable_headers

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_COOKIES = 32


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


async def read_at_most(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the body, and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await resp.content.read(limit - size)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), not resp.content.at_eof()


async def scoped_get(
    net: ScopedNetwork,
    url: str,
    *,
    max_bytes: int,
    timeout: aiohttp.ClientTimeout,
    max_redirects: int = 0,
) -> Fetched:
    """GET `url`, following at most `max_redirects` in-scope redirects.

    Raises OutOfScope when the first hop is out of scope, aiohttp.ClientError / TimeoutError / OSError
    when the target does not answer; the caller turns those into error observations.
    """
    session = net.http_session()
    redirects: list[str] = []
    cookies: list[str] = []
    for hop in range(max_redirects + 1):
        address = (await net.resolve(urlsplit(url).hostname or ""))[0]
        await net.admit(address)
        async with session.get(url, allow_redirects=False, timeout=timeout) as resp:
            net.report_http_status(address, resp.status, resp.headers.get("Retry-After"))
            cookies.extend(resp.headers.getall("Set-Cookie", [])[: MAX_COOKIES - len(cookies)])
            location = resp.headers.get("Location")
            if resp.status in REDIRECT_STATUSES and location and hop < max_redirects:
                target = urljoin(url, location)
                try:
                    await net.resolve(urlsplit(target).hostname or "")
                except OutOfScope:
                    return await _final(resp, url, cookies, redirects, max_bytes, out_of_scope=target)
                redirects.append(url)
                url = target
                continue
            return await _final(resp, url, cookies, redirects, max_bytes)
    raise AssertionError("unreachable: the last hop always returns")


async def _final(
    resp: aiohttp.ClientResponse,
    url: str,
    cookies: list[str],
    redirects: list[str],
    max_bytes: int,
    out_of_scope: str | None = None,
) -> Fetched:
    body, truncated = await read_at_most(resp, max_bytes)
    return Fetched(
        url=url,
        status=resp.status,
        headers=jsonable_headers(resp.headers),
        set_cookies=tuple(cookies),
        body=body,
        truncated=truncated,
        redirects=tuple(redirects),
        out_of_scope_redirect=out_of_scope,
    )
