"""For the web view's tests: its users, an aiohttp application served from a background loop (so the test's own
code, urllib or Playwright, can block), and a JSON API client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sentinel.engine.ruleset import Verdict
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Observation
from sentinel.registry.loader import load_registry_text
from sentinel.store import SqliteStore
from sentinel.web.auth import Authenticator, UserSettings
from sentinel.web.server import WebContext, add_web_routes
from tests.support.engine_lab import shipped_rules

if TYPE_CHECKING:
    from playwright.sync_api import Page

TOKENS = {"operator": "op-token", "owner": "owner-token", "auditor": "audit-token"}


def web_users(owner_department: str) -> list[dict[str, str]]:
    """alice the operator, bob the owner of `owner_department`, carol the auditor, as `web.users` entries."""
    return [
        {"name": "alice", "role": "operator", "token": TOKENS["operator"]},
        {"name": "bob", "role": "owner", "department": owner_department, "token": TOKENS["owner"]},
        {"name": "carol", "role": "auditor", "token": TOKENS["auditor"]},
    ]


@contextlib.contextmanager
def serving(app: web.Application, host: str, stop_timeout: float = 10) -> Iterator[str]:
    """Serve `app` on a free port of `host` from a background event loop; yields the base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, host, 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(stop_timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def call(url: str, token: str | None = None, body: Any = None, timeout: float = 10) -> tuple[int, Any, dict[str, str]]:
    """GET (or POST `body` as JSON) with a bearer token: status, the JSON or text answer, and the headers."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    if data:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            kind = resp.headers.get("Content-Type", "")
            return resp.status, json.loads(raw) if "json" in kind else raw.decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else raw.decode(), dict(exc.headers)


FINDINGS_HOST = "127.79.6.1"
FINDINGS_REGISTRY = load_registry_text("""
scope: {allow: ["10.0.0.0/8"]}
systems:
  - {id: portal, name: 市政务门户, owner: {department: 大数据局}, tier: city, mlps_level: 3,
     endpoints: [{host: 10.0.0.1, ports: [443]}]}
  - {id: permits, name: 区审批系统, owner: {department: 审批局}, tier: district, mlps_level: 2,
     endpoints: [{host: 10.0.1.1, ports: [80]}]}
""")


@contextlib.contextmanager
def findings_site(folder: Path) -> Iterator[tuple[str, SqliteStore]]:
    """The web view over a store with three findings (one critical on portal, two on permits; permits is down)."""
    store = SqliteStore(folder / "s.db")
    rules = shipped_rules()
    now = datetime.now(UTC)
    FindingTracker(store).apply(
        [
            Verdict(rules["tls_cert_not_expired"], "portal", "10.0.0.1:443", True, {"cert.days_to_expiry": -3}),
            Verdict(rules["port_high_risk_closed"], "permits", "10.0.1.1:3389/tcp", True, {"port": 3389}),
            Verdict(rules["http_redirects_to_https"], "permits", "http://10.0.1.1/", True, {"status_code": 200}),
        ],
        now,
    )
    store.save_observations([Observation("host", "permits", "10.0.1.1", now, "tcp_ports", data={"reachable": False})])
    users = [UserSettings.model_validate(u) for u in web_users("审批局")]
    app = web.Application()
    add_web_routes(app, WebContext(store, FINDINGS_REGISTRY, Authenticator(users)))
    with serving(app, FINDINGS_HOST) as base:
        yield base, store


def sign_in(page: Page, base: str, token: str) -> None:
    """Sign in on the login page of the web view at `base` with `token`, as a person would; lands on the overview."""
    page.goto(f"{base}/login")
    page.fill("#token", token)
    page.click("#login")
    page.wait_for_url(f"{base}/")
