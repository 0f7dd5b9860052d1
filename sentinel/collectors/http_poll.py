"""HTTP(S) poll: reachability, status, latency, redirect chain (scope-checked hop by hop), headers, body digest.

Fields of an answered poll (`status: ok`):
  reachable          true: the server answered
  tcp.connected      true
  tls.handshake_ok   true when the final URL is https (None on plain http)
  status_code        the final answer's status; `status_class` "2xx".."5xx"
  http.ok            true for 2xx/3xx, false for 4xx/5xx, None for 429 (throttled: says nothing about the page)
  http.server_error  true for 5xx, false for 2xx/3xx, None otherwise; `http.client_error` likewise for 4xx
  available          the page opened: `http.ok` (None after a redirect that could not be followed)
  latency_ms         the first request, from the start of the connection attempt (after the rate limiter, the
                     connection-slot queue and DNS) to the last byte of its body: curl's time_total minus
                     time_namelookup, without -L. `timing.connect_ms` / `timing.headers_ms`: connection (and TLS
                     handshake) made, response headers received, on the same clock. Measured from kernel stamps
                     (`http_timing`), so a busy event loop does not add to them.
A poll that got no HTTP answer is an error observation with `error_kind` (`connect`, `timeout`, `dns`,
`tls_handshake`), `reachable` false, except `tls_handshake`: the TCP connection was made and the TLS handshake
failed (`tls.error` says why), so the site is reachable, `tls.handshake_ok` false and `available` false.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urljoin, urlsplit

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.http_fetch import (
    REDIRECT_BODY_BYTES,
    REDIRECT_STATUSES,
    describe_failure,
    fetch_errors,
    http_tls_context,
    status_facts,
)
from sentinel.collectors.http_timing import WireClock
from sentinel.collectors.http_wire import wire_get
from sentinel.collectors.network import OutOfScope, ScopedNetwork, jsonable_headers
from sentinel.models import Observation
from sentinel.registry.models import System


class HttpProbe(Probe):
    name = "http"
    kind = "http"
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "http": frozenset(
            {"url", "scheme", "host", "redirect.out_of_scope", "redirect.out_of_scope_reason", "reachable"}
            | {"tcp.connected", "tls.handshake_ok", "tls.error", "status_code", "status_class", "http.ok"}
            | {"http.server_error", "http.client_error", "available", "latency_ms", "timing.connect_ms"}
            | {"timing.headers_ms", "final_url", "final_scheme", "redirects", "redirect_count", "redirect_limit"}
            | {"redirects_to_https", "headers", "server", "powered_by", "hsts", "hsts_present", "content_type"}
            | {"body_bytes", "body_sha256", "body_truncated", "error_kind", "failed_url"}
        )
    }

    def plan(self, system: System) -> Iterable[ProbeJob]:
        for endpoint in system.endpoints:
            if endpoint.url is not None:
                yield ProbeJob(self.name, system.id, endpoint.hostname, endpoint.url, url=endpoint.url)

    def budget(self, job: ProbeJob) -> int:
        return 1 + self.settings.max_redirects

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        assert job.url is not None
        started = datetime.now(UTC)
        url = job.url
        chain: list[dict[str, Any]] = []
        first = WireClock()
        scheme = urlsplit(job.url).scheme
        base: dict[str, Any] = {"url": job.url, "scheme": scheme, "host": job.host}
        last_status: int | None = None
        for hop in range(self.settings.max_redirects + 1):
            host = urlsplit(url).hostname or ""
            try:
                address = (await net.resolve(host))[0]
                await net.admit(address)
            except OutOfScope as exc:
                if hop == 0:
                    raise
                base["redirect.out_of_scope"] = url
                base["redirect.out_of_scope_reason"] = str(exc)
                break
            # Only the first request is timed (curl without -L), and only once it is admitted.
            timing = first if hop == 0 else WireClock()
            try:
                async with wire_get(
                    net,
                    address,
                    url,
                    clock=timing,
                    tls_context=http_tls_context(),
                    connect_timeout=self.settings.connect_timeout,
                    total_timeout=self.settings.http_timeout,
                ) as resp:
                    net.report_http_status(address, resp.status, resp.headers.get("Retry-After"))
                    last_status = resp.status
                    location = resp.headers.get("Location")
                    if resp.status in REDIRECT_STATUSES and location:
                        if hop == 0:  # read (bounded) so the first request's timing covers its whole answer
                            await resp.read(REDIRECT_BODY_BYTES)
                        chain.append({"url": url, "status": resp.status, "location": location})
                        url = urljoin(url, location)
                        continue
                    body, more = await resp.read(self.settings.max_body_bytes)
                    headers = jsonable_headers(resp.headers)
                    final_scheme = urlsplit(url).scheme
                    facts = status_facts(resp.status)
                    measured = first.timing()
                    data = {
                        **base,
                        "reachable": True,
                        "tcp.connected": True,
                        "tls.handshake_ok": True if final_scheme == "https" else None,
                        "status_code": resp.status,
                        **facts,
                        "available": facts["http.ok"],
                        "latency_ms": measured.total_ms,
                        **measured.fields(),
                        "final_url": url,
                        "final_scheme": final_scheme,
                        "redirects": chain,
                        "redirect_count": len(chain),
                        "redirects_to_https": final_scheme == "https",
                        "headers": headers,
                        "server": headers.get("server"),
                        "powered_by": headers.get("x-powered-by"),
                        "hsts": headers.get("strict-transport-security") if final_scheme == "https" else None,
                        "hsts_present": "strict-transport-security" in headers if final_scheme == "https" else None,
                        "content_type": headers.get("content-type"),
                        "body_bytes": len(body),
                        "body_sha256": hashlib.sha256(body).hexdigest(),
                        "body_truncated": more,
                    }
                    return [self.observation(job, started, data)]
            except fetch_errors() as exc:
                net.report_failure(address)
                kind, reason = describe_failure(exc)
                tls_failed = kind == "tls_handshake"
                https = urlsplit(url).scheme == "https"
                data = {
                    **base,
                    # A server that completed TCP and answered the handshake (with an alert) is there: what is
                    # wrong with it is TLS, not reachability.
                    "reachable": tls_failed,
                    "tcp.connected": True if tls_failed else timing.established_ns is not None,
                    "tls.handshake_ok": False if tls_failed else (True if https and timing.secured else None),
                    "available": False,
                    "error_kind": kind,
                    "redirects": chain,
                    "failed_url": url,
                }
                if tls_failed:
                    data["tls.error"] = reason
                return [self.observation(job, started, data, error=f"{url}: {reason}")]
        # Redirect limit reached, or the next hop was out of scope: report what was seen. The redirect is a good
        # answer of the server; whether the page behind it opens was not observed.
        data = {
            **base,
            "reachable": True,
            "tcp.connected": True,
            "redirects": chain,
            "redirect_count": len(chain),
            "latency_ms": first.timing().total_ms,
            **first.timing().fields(),
            "final_url": url,
            "final_scheme": urlsplit(url).scheme,
            "redirects_to_https": urlsplit(url).scheme == "https",
            "redirect_limit": "redirect.out_of_scope" not in base,
        }
        if last_status is not None:
            data.update({"status_code": last_status, **status_facts(last_status)})
        return [self.observation(job, started, data)]
