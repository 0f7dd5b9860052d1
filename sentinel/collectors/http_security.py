"""HTTP security checks of one URL: security headers, cookie flags, version disclosure, directory
listings, and exposed sensitive paths (VCS metadata, backups, config files, admin and debug consoles).

An exposed path counts only when its body carries the path's content signature (a Git HEAD line, a
ZIP magic number, `<web-app`...) *and* differs from what the site answers for a random path that cannot
exist: many sites answer 200 with the same page to everything. Requests per target are bounded
(`web_max_path_checks`) and at most a few KB are read from each path (`web_path_read_bytes`).
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.html_analysis import decode_html
from sentinel.collectors.http_fetch import Fetched, describe_failure, scoped_get
from sentinel.collectors.http_wire import POOL_PER_ORIGIN, WirePool
from sentinel.collectors.network import CircuitOpen, ScopedNetwork
from sentinel.config.settings import ProbeOptions
from sentinel.models import Observation
from sentinel.registry.models import System

if TYPE_CHECKING:
    import aiohttp

PAGE_READ_BYTES = 65_536
PATH_TIMEOUT = 5.0  # seconds per path check, at most
MAX_PATH_FAILURES = 5  # unanswered path checks before the rest are skipped
MAX_REPORTED = 20
MAX_URL_CHARS = 300
HSTS_MAX_AGE = re.compile(r"max-age\s*=\s*\"?(\d+)", re.I)
VERSION_TOKEN = re.compile(r"[A-Za-z][\w.+-]*[/ ]v?\d+(?:\.\d+)+[\w.-]*|[A-Za-z][\w+-]*/\d+\b")
VERSION_HEADERS = ("server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version", "x-generator", "via")
LISTING = re.compile(
    r"<title>\s*(?:Index of /|Directory listing for /|Directory Listing For /)|<h1>\s*(?:Index of /|Directory "
    r"listing for /)|\[To Parent Directory\]",
    re.I,
)
LISTING_DIRS = ("/upload/", "/uploads/", "/files/", "/attachment/", "/backup/")


# -- headers and cookies (pure) -------------------------------------------------------------------------------
def header_checks(headers: Mapping[str, str], scheme: str) -> dict[str, Any]:
    """Security-header facts; HSTS facts are None on plain HTTP, where HSTS does not apply."""
    csp = headers.get("content-security-policy")
    frame_ancestors = None
    if csp:
        for directive in csp.split(";"):
            name, _, value = directive.strip().partition(" ")
            if name.lower() == "frame-ancestors":
                frame_ancestors = value.strip()[:200]
    xfo = headers.get("x-frame-options")
    xfo_valid = xfo is not None and xfo.strip().upper() in ("DENY", "SAMEORIGIN")
    hsts = headers.get("strict-transport-security") if scheme == "https" else None
    max_age = HSTS_MAX_AGE.search(hsts) if hsts else None
    https = scheme == "https"
    return {
        "csp.present": csp is not None,
        "csp.report_only": "content-security-policy-report-only" in headers,
        "csp.value": csp[:300] if csp else None,
        "csp.frame_ancestors": frame_ancestors,
        "xfo.value": xfo[:100] if xfo else None,
        "frame_protection": xfo_valid or frame_ancestors is not None,
        "xcto.nosniff": headers.get("x-content-type-options", "").strip().lower() == "nosniff",
        "hsts.present": (hsts is not None) if https else None,
        "hsts.value": hsts[:200] if hsts else None,
        "hsts.max_age": int(max_age.group(1)) if max_age else None,
        "hsts.include_subdomains": ("includesubdomains" in hsts.lower()) if hsts else None,
    }


def parse_set_cookie(value: str) -> dict[str, Any]:
    first, *attributes = value.split(";")
    flags: dict[str, str] = {}
    for attribute in attributes:
        key, _, attr_value = attribute.strip().partition("=")
        flags[key.strip().lower()] = attr_value.strip()
    return {
        "name": first.partition("=")[0].strip()[:80],
        "secure": "secure" in flags,
        "httponly": "httponly" in flags,
        "samesite": flags.get("samesite", "")[:20] or None,
    }


def cookie_checks(set_cookies: Sequence[str], scheme: str) -> dict[str, Any]:
    """Per-cookie flags; a missing Secure flag is only a finding over HTTPS (over HTTP it cannot help)."""
    cookies = [parse_set_cookie(v) for v in set_cookies]
    no_secure = sorted({c["name"] for c in cookies if not c["secure"]}) if scheme == "https" else None
    no_httponly = sorted({c["name"] for c in cookies if not c["httponly"]})
    no_samesite = sorted({c["name"] for c in cookies if not c["samesite"]})
    return {
        "cookies": cookies[:MAX_REPORTED],
        "cookies.count": len(cookies),
        "cookies.without_secure": no_secure[:MAX_REPORTED] if no_secure is not None else None,
        "cookies.without_secure_count": len(no_secure) if no_secure is not None else None,
        "cookies.without_httponly": no_httponly[:MAX_REPORTED],
        "cookies.without_httponly_count": len(no_httponly),
        "cookies.without_samesite": no_samesite[:MAX_REPORTED],
    }


def version_disclosures(headers: Mapping[str, str]) -> list[str]:
    """`header: product/version` for each header that names a version number."""
    out: list[str] = []
    for name in VERSION_HEADERS:
        value = headers.get(name)
        if not value:
            continue
        if name in ("x-aspnet-version", "x-aspnetmvc-version"):
            out.append(f"{name}: {value[:100]}")
            continue
        out.extend(f"{name}: {m.group(0)[:100]}" for m in VERSION_TOKEN.finditer(value))
    return out[:MAX_REPORTED]


def is_directory_listing(text: str) -> bool:
    return LISTING.search(text[:8192]) is not None


# -- sensitive paths -----------------------------------------------------------------------------------------
def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def _not_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return not head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<?xml")) and b"<html" not in head


def _regex(pattern: str, flags: int = re.M) -> Callable[[bytes], bool]:
    compiled = re.compile(pattern, flags)
    return lambda body: compiled.search(_text(body)) is not None


def _magic(*prefixes: bytes) -> Callable[[bytes], bool]:
    return lambda body: body.startswith(prefixes)


def _env_file(body: bytes) -> bool:
    assignments = re.findall(r"^[A-Z][A-Z0-9_]{1,60}\s*=", _text(body), re.M)
    return _not_html(body) and len(assignments) >= 2


def _sql_dump(body: bytes) -> bool:
    return (
        _not_html(body)
        and re.search(
            r"^(-- MySQL dump|-- PostgreSQL database dump|CREATE TABLE|INSERT INTO|DROP TABLE)",
            _text(body),
            re.M | re.I,
        )
        is not None
    )


def _php_source(body: bytes) -> bool:
    return b"<?php" in body[:4096] or b"<?=" in body[:512]


def _admin_login(body: bytes) -> bool:
    text = _text(body).lower()
    has_password = re.search(r"<input[^>]+type\s*=\s*[\"']?password", text) is not None
    return has_password and re.search(r"admin|login|管理|登录|后台", text) is not None


@dataclass(frozen=True, slots=True)
class SensitivePath:
    path: str
    what: str
    category: str  # vcs | config | source | backup | admin | debug | api_docs
    signature: Callable[[bytes], bool]


SENSITIVE_PATHS: tuple[SensitivePath, ...] = (
    SensitivePath("/.git/HEAD", "Git repository metadata", "vcs", _regex(r"\Aref: refs/|\A[0-9a-f]{40}\s*\Z")),
    SensitivePath("/.git/config", "Git repository config", "vcs", _regex(r"^\[core\]")),
    SensitivePath("/.svn/wc.db", "Subversion working-copy database", "vcs", _magic(b"SQLite format 3\x00")),
    SensitivePath("/.DS_Store", "macOS folder index (lists file names)", "vcs", _magic(b"\x00\x00\x00\x01Bud1")),
    SensitivePath("/.env", "environment file (credentials)", "config", _env_file),
    SensitivePath("/WEB-INF/web.xml", "Java web-application descriptor", "config", _regex(r"<web-app\b")),
    SensitivePath("/index.php.bak", "PHP source backup", "source", _php_source),
    SensitivePath("/config.php.bak", "PHP configuration backup", "source", _php_source),
    SensitivePath("/index.php~", "PHP editor backup", "source", _php_source),
    SensitivePath("/backup.zip", "site backup archive", "backup", _magic(b"PK\x03\x04")),
    SensitivePath("/www.zip", "site backup archive", "backup", _magic(b"PK\x03\x04")),
    SensitivePath("/wwwroot.zip", "site backup archive", "backup", _magic(b"PK\x03\x04")),
    SensitivePath("/web.zip", "site backup archive", "backup", _magic(b"PK\x03\x04")),
    SensitivePath("/www.rar", "site backup archive", "backup", _magic(b"Rar!\x1a\x07")),
    SensitivePath("/backup.tar.gz", "site backup archive", "backup", _magic(b"\x1f\x8b")),
    SensitivePath("/backup.sql", "database dump", "backup", _sql_dump),
    SensitivePath("/db.sql", "database dump", "backup", _sql_dump),
    SensitivePath("/phpmyadmin/", "phpMyAdmin console", "admin", _regex(r"phpMyAdmin", re.I)),
    SensitivePath("/admin/", "administration login page", "admin", _admin_login),
    SensitivePath("/manager/html", "Tomcat manager", "admin", _regex(r"Tomcat Web Application Manager")),
    SensitivePath(
        "/actuator/env", "Spring Boot actuator environment", "debug", _regex(r'"(propertySources|activeProfiles)"')
    ),
    SensitivePath("/actuator", "Spring Boot actuator index", "debug", _regex(r'"_links"\s*:.*actuator', re.S)),
    SensitivePath("/druid/index.html", "Druid monitor console", "debug", _regex(r"Druid Stat Index|druid.index", re.I)),
    SensitivePath("/server-status", "Apache server status", "debug", _regex(r"Apache Server Status")),
    SensitivePath("/phpinfo.php", "phpinfo() page", "debug", _regex(r"<title>phpinfo\(\)|PHP Version \d", re.I)),
    SensitivePath("/info.php", "phpinfo() page", "debug", _regex(r"<title>phpinfo\(\)|PHP Version \d", re.I)),
    SensitivePath("/swagger-ui.html", "Swagger UI (API documentation)", "api_docs", _regex(r"swagger-ui", re.I)),
    SensitivePath("/swagger-ui/index.html", "Swagger UI (API documentation)", "api_docs", _regex(r"swagger-ui", re.I)),
    SensitivePath("/v2/api-docs", "Swagger API description", "api_docs", _regex(r'"swagger"\s*:\s*"2')),
    SensitivePath("/v3/api-docs", "OpenAPI description", "api_docs", _regex(r'"openapi"\s*:\s*"3')),
)


def _comparable(body: bytes, paths: Iterable[str]) -> str:
    """Body text without the echoed request paths and digits, for soft-404 comparison."""
    text = _text(body)
    for path in paths:
        text = text.replace(path, "")
    return re.sub(r"\d+", "0", text)


def same_as_baseline(resp: Fetched, baseline: Fetched | None, path: str, baseline_path: str) -> bool:
    """True when a path's answer is the site's catch-all answer (what a random path gets)."""
    if baseline is None or resp.status != baseline.status:
        return False
    a = _comparable(resp.body, (path, baseline_path))
    b = _comparable(baseline.body, (path, baseline_path))
    if hashlib.sha256(a.encode()).digest() == hashlib.sha256(b.encode()).digest():
        return True
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return matcher.real_quick_ratio() >= 0.9 and matcher.quick_ratio() >= 0.9 and matcher.ratio() >= 0.9


def site_root(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


# -- the probe -------------------------------------------------------------------------------------------------
class HttpSecurityOptions(ProbeOptions):
    """`collectors.http_security`."""

    max_path_checks: int = Field(default=40, ge=1, le=200, description="sensitive paths tried per site")
    path_read_bytes: int = Field(default=4096, ge=512, le=65536, description="bytes read of each path's answer")


class HttpSecurityProbe(Probe):
    name = "http_security"
    kind = "http_security"
    fields: ClassVar[Mapping[str, frozenset[str]]] = {
        "http_security": frozenset(
            {"url", "host", "error_kind", "final_url", "final_scheme", "status_code", "redirect.out_of_scope"}
            | {"csp.present", "csp.report_only", "csp.value", "csp.frame_ancestors", "xfo.value", "frame_protection"}
            | {"xcto.nosniff", "hsts.present", "hsts.value", "hsts.max_age", "hsts.include_subdomains", "cookies"}
            | {"cookies.count", "cookies.without_secure", "cookies.without_secure_count", "cookies.without_httponly"}
            | {"cookies.without_httponly_count", "cookies.without_samesite", "disclosure.versions"}
            | {"disclosure.version_disclosed", "baseline.status", "paths.checked", "paths.unanswered"}
            | {"exposed.paths", "exposed.count", "exposed.categories", "dirlist.urls", "dirlist.count"}
        )
    }
    Options = HttpSecurityOptions
    legacy_keys: ClassVar[Mapping[str, str]] = {
        "web_max_path_checks": "max_path_checks",
        "web_path_read_bytes": "path_read_bytes",
    }

    @property
    def options(self) -> HttpSecurityOptions:
        return self.settings.probe_options(self.name, HttpSecurityOptions)

    def plan(self, system: System) -> Iterable[ProbeJob]:
        for endpoint in system.endpoints:
            if endpoint.url is not None:
                yield ProbeJob(self.name, system.id, endpoint.hostname, endpoint.url, url=endpoint.url)

    @property
    def max_path_checks(self) -> int:
        return self.options.max_path_checks

    @property
    def path_read_bytes(self) -> int:
        return self.options.path_read_bytes

    def budget(self, job: ProbeJob) -> int:
        return 1 + self.settings.max_redirects + self.max_path_checks

    def _timeout(self) -> aiohttp.ClientTimeout:
        import aiohttp  # imported when a probe runs: the settings import this module only for its Options

        return aiohttp.ClientTimeout(total=self.settings.http_timeout, sock_connect=self.settings.connect_timeout)

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        # The page and its path checks share keep-alive connections: some forty requests to one site, which one
        # TCP and TLS handshake each made the costliest probe of a sweep; none of them is timed.
        pool = WirePool(min(POOL_PER_ORIGIN, self.settings.per_target_concurrency))
        try:
            return await self._run(job, net, pool)
        finally:
            pool.close()

    async def _run(self, job: ProbeJob, net: ScopedNetwork, pool: WirePool) -> list[Observation]:
        import aiohttp  # imported when a probe runs: the settings import this module only for its Options

        assert job.url is not None
        started = datetime.now(UTC)
        base: dict[str, Any] = {"url": job.url, "host": job.host}
        try:
            page = await scoped_get(
                net,
                job.url,
                max_bytes=PAGE_READ_BYTES,
                timeout=self._timeout(),
                max_redirects=self.settings.max_redirects,
                pool=pool,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # A backed-off target (circuit open) is "not probed", never a connection failure.
            kind, reason = describe_failure(exc)
            return [self.observation(job, started, {**base, "error_kind": kind}, error=f"{job.url}: {reason}")]
        scheme = urlsplit(page.url).scheme
        data: dict[str, Any] = {
            **base,
            "final_url": page.url[:MAX_URL_CHARS],
            "final_scheme": scheme,
            "status_code": page.status,
            "redirect.out_of_scope": (page.out_of_scope_redirect or "")[:MAX_URL_CHARS] or None,
            **header_checks(page.headers, scheme),
            **cookie_checks(page.set_cookies, scheme),
        }
        versions = version_disclosures(page.headers)
        data["disclosure.versions"] = versions
        data["disclosure.version_disclosed"] = bool(versions)
        if page.out_of_scope_redirect is None:
            data.update(await self._paths(net, page, pool))
        return [self.observation(job, started, data)]

    async def _paths(self, net: ScopedNetwork, page: Fetched, pool: WirePool) -> dict[str, Any]:
        """Directory listings and exposed sensitive paths at the root of the final URL's site."""
        import aiohttp  # imported when a probe runs: the settings import this module only for its Options

        root = site_root(page.url)
        random_path = f"/sentinel-{secrets.token_hex(8)}"
        budget = max(0, self.max_path_checks - 1)
        catalogue = [p.path for p in SENSITIVE_PATHS][:budget]
        dirs = list(LISTING_DIRS)[: max(0, budget - len(catalogue))]
        slots = asyncio.Semaphore(self.settings.per_target_concurrency)
        # Path checks get a short timeout and stop after a few failures, so a slow or failing site cannot
        # push the whole job past its timeout and lose the header facts already gathered.
        timeout = aiohttp.ClientTimeout(
            total=min(self.settings.http_timeout, PATH_TIMEOUT), sock_connect=self.settings.connect_timeout
        )
        failures = 0

        async def get(path: str) -> Fetched | None:
            nonlocal failures
            async with slots:
                if failures >= MAX_PATH_FAILURES:
                    return None
                try:
                    return await scoped_get(
                        net, root + path, max_bytes=self.path_read_bytes, timeout=timeout, pool=pool
                    )
                except (aiohttp.ClientError, TimeoutError, OSError, CircuitOpen):
                    failures += 1
                    return None

        baseline = await get(random_path) if budget else None
        answers = await asyncio.gather(*(get(p) for p in [*catalogue, *dirs]))
        by_path = dict(zip([*catalogue, *dirs], answers, strict=True))
        exposed: list[dict[str, Any]] = []
        for entry in SENSITIVE_PATHS:
            resp = by_path.get(entry.path)
            if resp is None or resp.status != 200 or not entry.signature(resp.body):
                continue
            if same_as_baseline(resp, baseline, entry.path, random_path):
                continue
            exposed.append({"path": entry.path, "what": entry.what, "category": entry.category})
        listings = (
            [page.url[:MAX_URL_CHARS]] if page.status == 200 and is_directory_listing(decode_html(page.body)) else []
        )
        for path in dirs:
            resp = by_path.get(path)
            if (
                resp is not None
                and resp.status == 200
                and is_directory_listing(decode_html(resp.body))
                and not same_as_baseline(resp, baseline, path, random_path)
            ):
                listings.append(root + path)
        checked = [p for p, r in by_path.items() if r is not None]
        observed = bool(checked) or not by_path  # nothing answered: unknown, never "nothing exposed"
        return {
            "baseline.status": baseline.status if baseline is not None else None,
            "paths.checked": len(checked),
            "paths.unanswered": len(by_path) - len(checked),
            "exposed.paths": exposed[:MAX_REPORTED],
            "exposed.count": len(exposed) if observed else None,
            "exposed.categories": sorted({e["category"] for e in exposed}),
            "dirlist.urls": listings[:MAX_REPORTED],
            "dirlist.count": len(listings) if observed else None,
        }
