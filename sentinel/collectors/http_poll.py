"""HTTP(S) poll: reachability, status, latency, redirect chain (scope-checked hop by hop), headers, body digest."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.http_fetch import read_at_most
from sentinel.collectors.network import OutOfScope, ScopedNetwork, jsonable_headers
from sentinel.models import Observation
from sentinel.registry.models import System


class HttpProbe(Probe):
    name = "http"
    kind = "http"

    def plan(self, system: System) -> Iterable[ProbeJob]:
        for endpoint in system.endpoints:
            if endpoint.url is not None:
                yield ProbeJob(self.name, system.id, endpoint.hostname, endpoint.url, url=endpoint.url)

    def budget(self, job: ProbeJob) -> int:
        return 1 + self.settings.max_redirects

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        assert job.url is not None
        started = datetime.now(UTC)
        session = net.http_session()
        timeout = aiohttp.ClientTimeout(total=self.settings.http_timeout, sock_connect=self.settings.connect_timeout)
        url = job.url
        chain: list[dict[str, Any]] = []
        first_latency: float | None = None
        scheme = urlsplit(job.url).scheme
        base: dict[str, Any] = {"url": job.url, "scheme": scheme, "host": job.host}
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
            t0 = time.perf_counter()
            try:
                async with session.get(url, allow_redirects=False, timeout=timeout) as resp:
                    latency = (time.perf_counter() - t0) * 1000
                    net.report_http_status(address, resp.status, resp.headers.get("Retry-After"))
                    if first_latency is None:
                        first_latency = latency
                    location = resp.headers.get("Location")
                    if resp.status in (301, 302, 303, 307, 308) and location:
                        chain.append({"url": url, "status": resp.status, "location": location})
                        url = urljoin(url, location)
                        continue
                    body, more = await read_at_most(resp, self.settings.max_body_bytes)
                    headers = jsonable_headers(resp.headers)
                    final_scheme = urlsplit(url).scheme
                    data = {
                        **base,
                        "reachable": True,
                        "status_code": resp.status,
                        "latency_ms": round(first_latency, 2),
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
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                net.report_failure(address)
                kind = "timeout" if isinstance(exc, TimeoutError | asyncio.TimeoutError) else "connect"
                reason = "timed out" if kind == "timeout" else (str(exc) or type(exc).__name__)[:300]
                data = {**base, "reachable": False, "error_kind": kind, "redirects": chain, "failed_url": url}
                return [self.observation(job, started, data, error=f"{url}: {reason}")]
        # Redirect limit reached, or the next hop was out of scope: report what was seen.
        data = {
            **base,
            "reachable": True,
            "redirects": chain,
            "redirect_count": len(chain),
            "latency_ms": round(first_latency, 2) if first_latency is not None else None,
            "final_url": url,
            "final_scheme": urlsplit(url).scheme,
            "redirects_to_https": urlsplit(url).scheme == "https",
            "redirect_limit": "redirect.out_of_scope" not in base,
        }
        return [self.observation(job, started, data)]
