"""The web view in real headless Chromium (Debian chromium driven by Playwright), and the JSON API's access rules."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sentinel.engine.ruleset import Verdict
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Observation
from sentinel.registry.loader import load_registry_text
from sentinel.store import SqliteStore
from sentinel.web.auth import Authenticator, UserSettings
from sentinel.web.server import WebContext, add_web_routes
from tests.netns import require
from tests.test_spine_core import RuleSet, load_rules, shipped_rules_dir

HOST = "127.79.6.1"
REGISTRY = load_registry_text("""
scope: {allow: ["10.0.0.0/8"]}
systems:
  - {id: portal, name: 市政务门户, owner: {department: 大数据局}, tier: city, mlps_level: 3,
     endpoints: [{host: 10.0.0.1, ports: [443]}]}
  - {id: permits, name: 区审批系统, owner: {department: 审批局}, tier: district, mlps_level: 2,
     endpoints: [{host: 10.0.1.1, ports: [80]}]}
""")
USERS = [
    UserSettings.model_validate({"name": "alice", "role": "operator", "token": "op-token"}),
    UserSettings.model_validate({"name": "bob", "role": "owner", "department": "审批局", "token": "owner-token"}),
    UserSettings.model_validate({"name": "carol", "role": "auditor", "token": "audit-token"}),
]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, SqliteStore]]:
    store = SqliteStore(tmp_path / "s.db")
    rules = {r.id: r for r in RuleSet(load_rules([shipped_rules_dir()])).rules}
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
    ctx = WebContext(store, REGISTRY, Authenticator(USERS))
    app = web.Application()
    add_web_routes(app, ctx)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site_ = web.TCPSite(runner, HOST, 0)
    loop.run_until_complete(site_.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{port}", store
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def call(url: str, token: str | None = None, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    if data:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_api_access_rules(site: tuple[str, SqliteStore]) -> None:
    base, store = site
    assert call(f"{base}/api/findings")[0] == 401
    assert call(f"{base}/api/findings", "wrong")[0] == 401
    status, everything = call(f"{base}/api/findings", "op-token")
    assert status == 200 and {f["system_id"] for f in everything} == {"portal", "permits"}
    status, own = call(f"{base}/api/findings", "owner-token")
    assert status == 200 and {f["system_id"] for f in own} == {"permits"}
    assert call(f"{base}/api/systems/portal", "owner-token")[0] == 403
    assert call(f"{base}/api/systems/permits", "owner-token")[0] == 200
    portal_finding = next(f for f in everything if f["system_id"] == "portal")["id"]
    assert call(f"{base}/api/findings/{portal_finding}", "owner-token")[0] == 404
    assert call(f"{base}/api/findings/{portal_finding}/acknowledge", "audit-token", {"reason": "x"})[0] == 403
    status, acked = call(f"{base}/api/findings/{portal_finding}/acknowledge", "op-token", {"reason": "OPS-1"})
    assert status == 200 and acked["status"] == "acknowledged" and acked["status_by"] == "alice"
    assert call(f"{base}/api/findings/{portal_finding}/acknowledge", "op-token", {"reason": "again"})[0] == 409
    assert store.finding_events(portal_finding)[-1]["actor"] == "alice"
    status, overview = call(f"{base}/api/overview", "owner-token")
    assert status == 200 and overview["totals"]["systems"] == 1 and overview["totals"]["down"] == 1
    assert call(f"{base}/healthz")[0] == 200


def test_pages_in_headless_chromium(site: tuple[str, SqliteStore], tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    require(chromium is not None, "needs Debian's chromium (installed by .ci/setup)")
    from playwright.sync_api import sync_playwright

    base, store = site
    shots = Path(__file__).resolve().parent.parent / "bench" / "out"
    shots.mkdir(parents=True, exist_ok=True)
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{base}/alerts")
            assert "/login" in page.url  # no session: sent to sign in
            page.fill("#token", "op-token")
            page.click("#login")
            page.wait_for_url(f"{base}/")
            assert page.inner_text("#n-systems") == "2" and page.inner_text("#n-critical") == "1"
            page.screenshot(path=str(shots / "web-overview.png"), full_page=True)
            page.goto(f"{base}/alerts?lang=en")
            assert page.locator("#findings tr[data-id]").count() == 3
            page.select_option("#f-severity", "critical")
            page.click("#apply")
            assert page.locator("#findings tr[data-id]").count() == 1
            row = page.locator("#findings tr[data-id]").first
            assert row.get_attribute("data-system") == "portal"
            row.locator("input[name=reason]").fill("ticket OPS-9")
            row.locator("button.ack").click()
            page.wait_for_selector("#flash")
            assert "Acknowledged" in page.locator("#findings tr[data-id]").first.inner_text()
            page.screenshot(path=str(shots / "web-alerts.png"), full_page=True)
            fid = page.locator("#findings tr[data-id]").first.get_attribute("data-id")
            assert fid is not None
            events = store.finding_events(fid)
            assert (events[-1]["actor"], events[-1]["to_status"], events[-1]["reason"]) == (
                "alice",
                "acknowledged",
                "ticket OPS-9",
            )

            owner = browser.new_page()
            owner.goto(f"{base}/login")
            owner.fill("#token", "owner-token")
            owner.click("#login")
            owner.wait_for_url(f"{base}/")
            assert owner.inner_text("#n-systems") == "1"
            owner.goto(f"{base}/alerts")
            assert {r.get_attribute("data-system") for r in owner.locator("#findings tr[data-id]").all()} == {"permits"}
            assert owner.locator("button.ack").count() == 0  # owners are read-only
            response = owner.goto(f"{base}/systems/portal")
            assert response is not None and response.status == 403
            response = owner.goto(f"{base}/systems/permits")
            assert response is not None and response.status == 200 and "区审批系统" in owner.content()
            owner.screenshot(path=str(shots / "web-system-zh.png"), full_page=True)
        finally:
            browser.close()


def test_api_writes_need_the_token_and_a_well_formed_body(site: tuple[str, SqliteStore]) -> None:
    base, _ = site
    _, everything = call(f"{base}/api/findings", "op-token")
    fid = everything[0]["id"]
    assert call(f"{base}/api/findings/{fid}/acknowledge", "op-token", [1])[0] == 400  # type: ignore[arg-type]
    assert call(f"{base}/api/findings/{fid}/acknowledge", "op-token", {"reason": "x", "until": 5})[0] == 400
    past = call(f"{base}/api/findings/{fid}/suppress", "op-token", {"reason": "x", "until": "2001-01-01"})
    assert past[0] == 400 and "past" in past[1]["error"]
    # A session cookie alone (what a same-site form could send) cannot act through the API.
    login = urllib.request.Request(f"{base}/login", data=b"token=op-token", method="POST")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    opener.open(login, timeout=10)
    req = urllib.request.Request(
        f"{base}/api/findings/{fid}/acknowledge",
        data=b'{"reason": "x"}',
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        opener.open(req, timeout=10)
    assert err.value.code == 401


def test_redirect_after_an_action_stays_on_this_site() -> None:
    from sentinel.web.server import _local_path

    assert _local_path("/alerts?severity=high") == "/alerts?severity=high"
    for hostile in ("//evil.example/x", "/\\evil.example", "https://evil.example/", "alerts", ""):
        assert _local_path(hostile) == "/alerts"


def test_users_must_be_distinct() -> None:
    from pydantic import ValidationError

    from sentinel.web.settings import WebSettings

    with pytest.raises(ValidationError, match="unique"):
        WebSettings.model_validate(
            {
                "users": [
                    {"name": "bob", "role": "owner", "department": "A", "token": "a"},
                    {"name": "bob", "role": "operator", "token": "b"},
                ]
            }
        )
    with pytest.raises(ValidationError, match="share a token"):
        WebSettings.model_validate(
            {"users": [{"name": "a", "role": "auditor", "token": "t"}, {"name": "b", "role": "operator", "token": "t"}]}
        )


def test_a_stale_copy_cannot_overwrite_a_newer_state(tmp_path: Path) -> None:
    from sentinel.findings.lifecycle import InvalidTransitionError, LifecycleEvent

    store = SqliteStore(tmp_path / "s.db")
    rules = {r.id: r for r in RuleSet(load_rules([shipped_rules_dir()])).rules}
    FindingTracker(store).apply(
        [Verdict(rules["tls_cert_not_expired"], "portal", "t:443", True, {})], datetime.now(UTC)
    )
    (stale,) = store.list_findings()
    other = SqliteStore(tmp_path / "s.db")
    (fresh,) = other.list_findings()
    FindingTracker(other).act(fresh, LifecycleEvent.RESOLVE, "alice", "fixed", datetime.now(UTC))
    with pytest.raises(InvalidTransitionError):  # decided on the stored row (resolved), not the stale copy (open)
        FindingTracker(store).act(stale, LifecycleEvent.ACKNOWLEDGE, "bob", "late", datetime.now(UTC))
    assert store.get_finding(stale.id).status.value == "resolved"  # type: ignore[union-attr]
