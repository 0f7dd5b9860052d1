"""The http_security probe against real loopback servers (aiohttp, `python -m http.server`): exposed paths, directory
listings, HTTPS headers, cookies and HSTS, bounded requests, redirects out of scope, paths that hang."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from sentinel.collectors.http_security import (
    SENSITIVE_PATHS,
    HttpSecurityProbe,
    cookie_checks,
    header_checks,
    is_directory_listing,
    version_disclosures,
)
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.collectors.web_integrity import WebIntegrityProbe
from sentinel.demo.certs import self_signed
from sentinel.demo.estate import free_port
from tests.support.web_probe_runs import IP, SCOPE, SETTINGS, fires, run_probe, serve, system


async def test_exposed_git_head_is_reported(runners: list[web.AppRunner]) -> None:
    seen: list[str] = []

    async def site(request: web.Request) -> web.Response:
        seen.append(request.path)
        if request.path == "/.git/HEAD":
            return web.Response(text="ref: refs/heads/master\n")
        if request.path == "/":
            return web.Response(text="<html><body>home</body></html>", content_type="text/html")
        return web.Response(status=404, text="not found")

    runner, port = await serve(site)
    runners.append(runner)
    obs = await run_probe(HttpSecurityProbe(SETTINGS), f"http://{IP}:{port}/")
    assert obs.data["exposed.paths"] == [{"path": "/.git/HEAD", "what": "Git repository metadata", "category": "vcs"}]
    assert obs.data["exposed.count"] == 1 and obs.data["dirlist.count"] == 0
    assert fires("http_no_sensitive_paths_exposed", obs) is True
    assert len(seen) <= 1 + 40 and obs.data["paths.checked"] == len(seen) - 2  # bounded; page and baseline aside
    assert any(p.startswith("/sentinel-") for p in seen)  # the random-path baseline


async def test_site_answering_200_everywhere_reports_no_exposed_path(runners: list[web.AppRunner]) -> None:
    async def catch_all(request: web.Request) -> web.Response:
        # A single-page app: same shell everywhere, echoing the path, with a login form (like /admin/ would).
        html = f"""<!doctype html><html><head><title>政务服务 admin</title></head><body>
        <div id="app" data-route="{request.path}">登录 <input type="password" name="pw"></div>
        <p>Index of services</p><p>PHP Version 8</p></body></html>"""
        return web.Response(text=html, content_type="text/html")

    runner, port = await serve(catch_all)
    runners.append(runner)
    obs = await run_probe(HttpSecurityProbe(SETTINGS), f"http://{IP}:{port}/")
    assert obs.data["baseline.status"] == 200
    assert obs.data["exposed.count"] == 0 and obs.data["exposed.paths"] == []
    assert obs.data["dirlist.count"] == 0
    assert fires("http_no_sensitive_paths_exposed", obs) is False


@pytest.fixture
def listing_server(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "index.html").write_text("<html><body>portal</body></html>")
    (tmp_path / "uploads").mkdir()
    (tmp_path / "uploads" / "名单.xls").write_bytes(b"x")
    port = free_port(IP)
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", IP, "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((IP, port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


async def test_directory_listing_of_python_http_server(listing_server: int) -> None:
    obs = await run_probe(HttpSecurityProbe(SETTINGS), f"http://{IP}:{listing_server}/")
    assert obs.data["dirlist.urls"] == [f"http://{IP}:{listing_server}/uploads/"]
    assert fires("http_no_directory_listing", obs) is True
    assert obs.data["exposed.count"] == 0
    assert fires("http_no_version_disclosure", obs) is True  # SimpleHTTP/0.6 Python/3.x
    assert obs.data["final_scheme"] == "http" and obs.data["hsts.present"] is None


async def test_https_headers_cookies_and_hsts(tmp_path: Path, runners: list[web.AppRunner]) -> None:
    import ssl

    cert = self_signed(tmp_path, "site", [IP])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)

    async def weak(request: web.Request) -> web.Response:
        if request.path != "/":
            return web.Response(status=404)
        resp = web.Response(text="<html>weak</html>", content_type="text/html")
        resp.headers["Server"] = "nginx/1.18.0"
        resp.headers["Strict-Transport-Security"] = "max-age=3600"
        resp.headers.add("Set-Cookie", "JSESSIONID=abc; Path=/")
        resp.headers.add("Set-Cookie", "lang=zh; Path=/; Secure; HttpOnly; SameSite=Lax")
        return resp

    async def strong(request: web.Request) -> web.Response:
        resp = web.Response(
            text="<html>strong</html>", content_type="text/html", status=200 if request.path == "/" else 404
        )
        resp.headers.update(
            {
                "Server": "nginx",
                "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
                "Content-Security-Policy": "default-src 'self'",
                "X-Frame-Options": "SAMEORIGIN",
                "X-Content-Type-Options": "nosniff",
                "Set-Cookie": "SID=1; Path=/; Secure; HttpOnly; SameSite=Strict",
            }
        )
        return resp

    r1, weak_port = await serve(weak, ctx)
    r2, strong_port = await serve(strong, ctx)
    runners.extend([r1, r2])
    probe = HttpSecurityProbe(SETTINGS)
    bad = await run_probe(probe, f"https://{IP}:{weak_port}/")
    good = await run_probe(probe, f"https://{IP}:{strong_port}/")
    assert bad.data["cookies.without_secure"] == ["JSESSIONID"] and bad.data["cookies.without_httponly"] == [
        "JSESSIONID"
    ]
    assert bad.data["hsts.max_age"] == 3600 and bad.data["disclosure.versions"] == ["server: nginx/1.18.0"]
    wanted_bad = {
        "http_csp_present": True,
        "http_frame_protection_present": True,
        "http_nosniff_present": True,
        "http_cookies_secure_httponly": True,
        "http_no_version_disclosure": True,
        "https_hsts_max_age_sufficient": True,
        "http_no_directory_listing": False,
        "http_no_sensitive_paths_exposed": False,
    }
    assert {rule: fires(rule, bad) for rule in wanted_bad} == wanted_bad
    assert {rule: fires(rule, good) for rule in wanted_bad} == dict.fromkeys(wanted_bad, False)


async def test_http_security_bounds_requests_and_reads(runners: list[web.AppRunner]) -> None:
    hits: list[str] = []

    async def huge(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(64):  # 4 MB offered per path; the probe must stop after a few KB
            await resp.write(b"PK\x03\x04" + b"\0" * 65532)
        return resp

    runner, port = await serve(huge)
    runners.append(runner)
    settings = SETTINGS.model_copy()
    probe = HttpSecurityProbe(settings)
    started = time.monotonic()
    obs = await run_probe(probe, f"http://{IP}:{port}/")
    assert time.monotonic() - started < 15
    assert len(hits) <= 1 + probe.max_path_checks
    assert obs.data["paths.checked"] <= probe.max_path_checks and len(SENSITIVE_PATHS) < probe.max_path_checks
    # Same answer everywhere (the random path too): no zip counts as exposed.
    assert obs.data["exposed.count"] == 0


async def test_redirect_out_of_scope_is_recorded_not_followed(runners: list[web.AppRunner]) -> None:
    outside_hits: list[str] = []
    outside_ip = "127.81.1.10"  # outside SCOPE (127.81.0.0/24)

    async def outside(request: web.Request) -> web.Response:
        outside_hits.append(request.path)
        return web.Response(text="<a style='display:none' href='http://casino.example/'>casino</a>")

    app = web.Application()
    app.router.add_get("/{tail:.*}", outside)
    out_runner = web.AppRunner(app, access_log=None)
    await out_runner.setup()
    out_port = free_port(outside_ip)
    await web.TCPSite(out_runner, outside_ip, out_port).start()
    runners.append(out_runner)

    async def hop(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{outside_ip}:{out_port}/landing")

    runner, port = await serve(hop)
    runners.append(runner)
    security = await run_probe(HttpSecurityProbe(SETTINGS), f"http://{IP}:{port}/")
    integrity = await run_probe(WebIntegrityProbe(SETTINGS), f"http://{IP}:{port}/")
    assert outside_hits == []
    assert security.data["redirect.out_of_scope"] == f"http://{outside_ip}:{out_port}/landing"
    assert "exposed.count" not in security.data  # the site was not probed further
    assert integrity.status.value == "error" and integrity.data["error_kind"] == "out_of_scope"


async def test_hanging_paths_keep_header_facts_and_read_as_unknown(runners: list[web.AppRunner]) -> None:
    hits: list[str] = []

    async def slow_paths(request: web.Request) -> web.Response:
        hits.append(request.path)
        if request.path != "/":
            await asyncio.sleep(1.5)
        return web.Response(text="<html>home</html>", content_type="text/html", headers={"X-Frame-Options": "DENY"})

    runner, port = await serve(slow_paths)
    runners.append(runner)
    settings = SETTINGS.model_copy(update={"http_timeout": 0.5})
    net = ScopedNetwork(SCOPE, settings)
    probe = HttpSecurityProbe(settings)
    try:
        (job,) = list(probe.plan(system(f"http://{IP}:{port}/")))
        (obs,) = await run_job(PlannedJob(probe, job), net, 20)
    finally:
        await net.close()
    assert obs.status.value == "ok" and obs.data["frame_protection"] is True
    assert obs.data["paths.checked"] == 0 and obs.data["exposed.count"] is None and obs.data["dirlist.count"] is None
    assert len(hits) <= 1 + 1 + 5 + settings.per_target_concurrency  # page, baseline, failures, in-flight
    assert fires("http_no_sensitive_paths_exposed", obs) is None  # could not observe: no verdict


def test_header_and_cookie_checks() -> None:
    headers = {
        "strict-transport-security": "max-age=86400; includeSubDomains",
        "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
        "x-content-type-options": "nosniff",
        "server": "nginx/1.18.0 (Ubuntu)",
        "x-powered-by": "PHP/7.4.3",
        "x-aspnet-version": "4.0.30319",
    }
    facts = header_checks(headers, "https")
    assert facts["hsts.max_age"] == 86400 and facts["hsts.include_subdomains"] is True
    assert facts["frame_protection"] is True and facts["csp.frame_ancestors"] == "'none'"
    assert facts["xcto.nosniff"] is True
    assert header_checks(headers, "http")["hsts.present"] is None  # HSTS does not apply to plain HTTP
    assert header_checks({"x-frame-options": "ALLOWALL"}, "https")["frame_protection"] is False
    assert version_disclosures(headers) == [
        "server: nginx/1.18.0",
        "x-powered-by: PHP/7.4.3",
        "x-aspnet-version: 4.0.30319",
    ]
    assert version_disclosures({"server": "nginx", "x-powered-by": "ASP.NET"}) == []
    cookies = cookie_checks(["sid=1; Path=/; Secure; HttpOnly; SameSite=Lax", "pref=2; Path=/"], "https")
    assert cookies["cookies.without_secure"] == ["pref"] and cookies["cookies.without_httponly"] == ["pref"]
    assert cookies["cookies"][0] == {"name": "sid", "secure": True, "httponly": True, "samesite": "Lax"}
    assert cookie_checks(["pref=2"], "http")["cookies.without_secure_count"] is None


def test_directory_listing_signatures() -> None:
    assert is_directory_listing("<html><head><title>Index of /uploads</title>")
    assert is_directory_listing("<title>Directory listing for /files/</title>")
    assert is_directory_listing("<pre><A HREF='/'>[To Parent Directory]</A>")
    assert not is_directory_listing("<title>首页</title><p>Index of documents</p>")
