"""web/server.py: the web view in real headless Chromium (Debian chromium driven by Playwright), the JSON API's access
rules, and finding titles in the page's language (over the `findings_site` fixture's three findings)."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sentinel.store import SqliteStore
from tests.netns import require
from tests.support import web_site
from tests.support.engine_lab import shipped_rules


def call(url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    """The status and the answer of an API call (tests.support.web_site.call without the headers)."""
    status, answer, _ = web_site.call(url, token, body)
    return status, answer


def test_api_access_rules(findings_site: tuple[str, SqliteStore]) -> None:
    base, store = findings_site
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


def test_pages_in_headless_chromium(findings_site: tuple[str, SqliteStore], tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    require(chromium is not None, "needs Debian's chromium (installed by .ci/setup)")
    from playwright.sync_api import sync_playwright

    base, store = findings_site
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
            web_site.sign_in(owner, base, "owner-token")
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


def test_api_writes_need_the_token_and_a_well_formed_body(findings_site: tuple[str, SqliteStore]) -> None:
    base, _ = findings_site
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


@pytest.mark.parametrize(
    ("lang", "shown", "hidden"),
    [
        ("zh", ("TLS 证书已过期", "高危端口开放"), "TLS certificate has expired"),
        ("en", ("TLS certificate has expired",), "TLS 证书已过期"),
    ],
)
def test_web_pages_show_finding_titles_in_the_page_language(
    findings_site: tuple[str, SqliteStore], lang: str, shown: tuple[str, ...], hidden: str
) -> None:
    base, _ = findings_site

    def page(path: str) -> str:
        req = urllib.request.Request(f"{base}{path}?lang={lang}", headers={"Authorization": "Bearer op-token"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(resp.read().decode())

    alerts = page("/alerts")
    for text in shown:
        assert text in alerts, text
    assert hidden not in alerts
    system = page("/systems/portal")
    assert shown[0] in system and hidden not in system
    rule = shipped_rules()["tls_cert_not_expired"]
    fix = rule.remediation_zh if lang == "zh" else "Renew the certificate with the issuing CA"
    assert fix in system and "`" not in system
    overview = page("/")
    assert shown[0] in overview and hidden not in overview  # newest critical findings
