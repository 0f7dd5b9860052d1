"""Issue 13: the SOC's situational-awareness view and the owners' 通报 → 整改 → 复核 loop, with real parts:
the aiohttp application on loopback, headless Chromium (Debian's, driven by Playwright), a real TCP listener
as the system that gets fixed, the real tcp_ports probe through ScopedNetwork, and the real CLI."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from sentinel.app import Sentinel
from sentinel.cli.findings_cmd import findings as findings_cli
from sentinel.cli.scan_cmd import ScanProgress
from sentinel.collectors.runner import SweepProgress
from sentinel.config.settings import load_settings
from sentinel.engine.ruleset import Verdict
from sentinel.findings.policy import FindingsSettings
from sentinel.findings.tracker import STILL_THERE, VERIFIED, FindingTracker
from sentinel.models import Finding, FindingStatus, Observation
from sentinel.notify.notifier import Notifier
from sentinel.notify.settings import NotifySettings
from sentinel.registry.loader import load_registry
from sentinel.store import SqliteStore
from sentinel.web.listener import build_listener
from tests.netns import require_tool
from tests.support import web_site
from tests.support.engine_lab import shipped_rules
from tests.support.settings_files import tcp_only_collectors, write_config
from tests.support.web_site import serving, web_users

NET = "127.79.7"
HOST = f"{NET}.1"  # the web view
SERVICE = f"{NET}.20"  # the system that will be fixed
RULES = shipped_rules()
OWNER_DEPT = "区行政审批局"


def _registry_doc(port: int) -> dict[str, Any]:
    systems = [
        {
            "id": "permits",
            "name": "区审批系统",
            "owner": {"department": OWNER_DEPT, "email": "ops@permits.example.cn"},
            "tier": "district",
            "mlps_level": 3,
            "endpoints": [{"host": SERVICE, "ports": [port]}],
        },
        {
            "id": "portal",
            "name": "市政务门户",
            "owner": {"department": "市大数据局"},
            "tier": "city",
            "mlps_level": 3,
            "endpoints": [{"host": f"{NET}.30", "ports": [443]}],
        },
    ]
    systems += [
        {
            "id": f"street-{i}",
            "name": f"街道系统{i}",
            "owner": {"department": f"第{i % 3}街道办"},
            "tier": "street",
            "mlps_level": 2,
            "endpoints": [{"host": f"{NET}.{100 + i}", "ports": [80]}],
        }
        for i in range(6)
    ]
    return {"scope": {"allow": [f"{NET}.0/24"]}, "systems": systems}


USERS = web_users(OWNER_DEPT)


class Lab:
    """A settings file, registry and store for a small estate whose 'permits' system listens on a high-risk port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((SERVICE, 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        (folder / "registry.yaml").write_text(yaml.safe_dump(_registry_doc(self.port), allow_unicode=True), "utf-8")
        collectors = tcp_only_collectors(tcp_ports={"high_risk_ports": [self.port]})
        self.config = write_config(folder, folder / "registry.yaml", collectors=collectors, web={"users": USERS})
        self.settings = load_settings(self.config, {})
        self.registry = load_registry(folder / "registry.yaml")

    def close_service(self) -> None:
        self.listener.close()

    def scan(self) -> None:
        app = Sentinel(self.settings)
        try:
            app.scan()
        finally:
            app.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close_service()


@pytest.fixture
def site(lab: Lab) -> Iterator[tuple[Lab, str]]:
    """The listener `serve` and `run` use (web view, API, /metrics), after one real sweep of the lab."""
    lab.scan()
    with serving(build_listener(lab.settings, lambda: lab.registry, compliance_interval=0), HOST, 30) as base:
        yield lab, base


def call(url: str, token: str | None = None, body: dict[str, Any] | None = None) -> tuple[int, Any, dict[str, str]]:
    return web_site.call(url, token, body, timeout=30)


def _port_finding(store: SqliteStore) -> Finding:
    (found,) = [f for f in store.list_findings() if f.rule_id == "port_high_risk_closed"]
    return found


# -- lifecycle -----------------------------------------------------------------------------------


def test_rectified_findings_close_on_evidence_or_go_back_to_the_owner(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    tracker = FindingTracker(store)
    rule = RULES["port_high_risk_closed"]
    now = datetime.now(UTC)
    seen = Verdict(rule, "permits", "10.0.0.1:3389/tcp", True, {"port": 3389})
    tracker.apply([seen], now)
    (f,) = store.list_findings()
    tracker.rectify(f, "bob", "端口已关闭", now, now + timedelta(days=2))
    assert f.status == FindingStatus.RECTIFIED and f.planned_fix is not None and f.status.is_active
    tracker.apply([seen], now + timedelta(minutes=5))  # still there
    f = store.get_finding(f.id)  # type: ignore[assignment]
    assert f.status == FindingStatus.ACKNOWLEDGED and f.status_reason == STILL_THERE
    tracker.rectify(f, "bob", "防火墙已封禁", now)
    tracker.apply([Verdict(rule, "permits", "10.0.0.1:3389/tcp", False)], now + timedelta(minutes=10))
    f = store.get_finding(f.id)  # type: ignore[assignment]
    assert f.status == FindingStatus.RESOLVED and f.status_reason == VERIFIED
    steps = [(e["actor"], e["from_status"], e["to_status"], e["reason"]) for e in store.finding_events(f.id)]
    assert steps == [
        ("sentinel", None, "open", "first detected"),
        ("bob", "open", "rectified", f"端口已关闭 (planned: {(now + timedelta(days=2)).date().isoformat()})"),
        ("sentinel", "rectified", "acknowledged", STILL_THERE),
        ("bob", "acknowledged", "rectified", "防火墙已封禁"),
        ("sentinel", "rectified", "resolved", VERIFIED),
    ]


# -- the owner's loop through the web view, with a real re-check --------------------------------------


def test_owner_rectifies_in_chromium_and_the_recheck_decides(site: tuple[Lab, str]) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    lab, base = site
    store = SqliteStore(lab.settings.store)
    finding = _port_finding(store)
    assert finding.status == FindingStatus.OPEN
    shots = Path(__file__).resolve().parent.parent / "bench" / "out"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            web_site.sign_in(page, base, "owner-token")
            page.goto(f"{base}/alerts")
            rows = page.locator("#findings tr[data-id]")
            assert {r.get_attribute("data-system") for r in rows.all()} == {"permits"}
            assert page.locator("button.suppress").count() == 0  # only operators suppress or accept risks
            row = page.locator(f"#findings tr[data-id='{finding.id}']")
            # The port still listens: the re-check sees it, and the finding goes back to the owner.
            row.locator("input[name=reason]").fill("已关闭远程桌面")
            row.locator("input[name=recheck]").check()
            row.locator("button.rectify").click()
            page.wait_for_selector("#flash")
            assert "re-check: now acknowledged" in page.inner_text("#flash")
            assert store.get_finding(finding.id).status == FindingStatus.ACKNOWLEDGED  # type: ignore[union-attr]
            lab.close_service()  # the owner really fixes it
            page.goto(f"{base}/systems/permits")
            form = page.locator(f"#system-findings tr[data-id='{finding.id}'] form.owner-form")
            form.locator("input[name=reason]").fill("防火墙已封禁 3389")
            form.locator("input[name=planned]").fill(datetime.now(UTC).date().isoformat())
            form.locator("button.rectify").click()  # the system page checks "re-check now" by default
            page.wait_for_selector("#flash")
            assert "re-check: now resolved" in page.inner_text("#flash"), page.inner_text("#flash")
            page.goto(f"{base}/systems/permits?status=all")
            history = page.locator(f"#system-findings tr[data-id='{finding.id}'] .event").all_inner_texts()
            page.screenshot(path=str(shots / "web-owner-rectify.png"), full_page=True)
            forbidden = page.goto(f"{base}/systems/portal")
            assert forbidden is not None and forbidden.status == 403
        finally:
            browser.close()
    text = "\n".join(history)
    assert "已关闭远程桌面" in text and STILL_THERE in text and "re-check requested" in text and VERIFIED in text
    final = store.get_finding(finding.id)
    assert final is not None and final.status == FindingStatus.RESOLVED and final.status_by == "sentinel"
    store.close()


def test_api_roles_for_rectify_and_suppress(site: tuple[Lab, str]) -> None:
    lab, base = site
    store = SqliteStore(lab.settings.store)
    fid = _port_finding(store).id
    assert call(f"{base}/api/findings/{fid}/suppress", "owner-token", {"reason": "x"})[0] == 403
    assert call(f"{base}/api/findings/{fid}/rectify", "audit-token", {"note": "x"})[0] == 403
    assert call(f"{base}/api/findings/{fid}/rectify", "owner-token", {"note": "x", "planned": "2001-01-01"})[0] == 400
    assert call(f"{base}/api/findings/{fid}/rectify", "owner-token", {"note": "x", "recheck": "yes"})[0] == 400
    status, body, _ = call(f"{base}/api/findings/{fid}/rectify", "owner-token", {"note": "补丁已安装"})
    assert status == 200 and body["status"] == "rectified" and body["status_by"] == "bob"
    status, page_, headers = call(f"{base}/api/findings?status=rectified&limit=1", "op-token")
    assert status == 200 and [f["id"] for f in page_] == [fid] and headers["X-Total-Count"] == "1"
    assert call(f"{base}/api/findings?limit=abc&page=-3&severity=nonsense&age=forever", "op-token")[0] == 200
    store.close()


def test_cli_rectify_with_recheck(lab: Lab) -> None:
    lab.scan()
    store = SqliteStore(lab.settings.store)
    fid = _port_finding(store).id
    runner = CliRunner()
    args = ["--config", str(lab.config)]
    result = runner.invoke(findings_cli, ["rectify", fid[:12], "--note", "已加固", "--recheck", *args])
    assert result.exit_code == 0, result.output
    assert "now rectified" in result.output and "re-check: now acknowledged" in result.output
    lab.close_service()
    result = runner.invoke(findings_cli, ["rectify", fid[:12], "--note", "端口已关", "--planned", "2001-01-01", *args])
    assert result.exit_code == 2 and "past" in result.output  # a usage error, not a traceback
    result = runner.invoke(findings_cli, ["rectify", fid[:12], "--note", "端口已关", "--recheck", *args])
    assert result.exit_code == 0 and "re-check: now resolved" in result.output, result.output
    sweeps = store.sweeps(5)
    assert any("re-check" in s["actor"] for s in sweeps)  # each re-check is an audited sweep of one job
    assert all(s["planned_jobs"] == 1 for s in sweeps if "re-check" in s["actor"])
    store.close()


# -- the SOC's overview, live ---------------------------------------------------------------------


def test_overview_is_live_in_chromium(site: tuple[Lab, str]) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    lab, base = site
    store = SqliteStore(lab.settings.store)
    now = datetime.now(UTC)
    store.save_observations(
        [Observation("tls", "portal", f"{NET}.30:443", now, "tls", data={"cert.days_to_expiry": 6.0})]
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            web_site.sign_in(page, base, "op-token")
            assert page.inner_text("#n-systems") == "8" and page.inner_text("#n-high") == "1"
            assert page.locator("#tiles-district .tile[data-worst=high]").count() == 1
            assert page.locator("#tiles-street .tile").count() == 3 and page.locator("#tiles-city .tile").count() == 1
            assert page.locator("#trend svg polygon").count() >= 1  # the chart is drawn by the server
            assert page.inner_text("#c-newly_open_ports") == "0" and page.inner_text("#c-certs_14d") == "1"
            assert "tcp_ports" in page.inner_text("#freshness")
            page.wait_for_function("document.getElementById('live-state').className === 'live'")
            # A sweep elsewhere records a critical finding: the open page updates itself, without a reload.
            FindingTracker(store).apply(
                [Verdict(RULES["tls_cert_not_expired"], "portal", f"{NET}.30:443", True, {"cert.days_to_expiry": -2})],
                datetime.now(UTC),
            )
            page.wait_for_function("document.getElementById('n-critical').textContent === '1'", timeout=15000)
            assert page.locator("#tiles-city .tile[data-worst=critical]").count() == 1
            page.screenshot(path=str(Path(__file__).resolve().parent.parent / "bench/out/web-overview-live.png"))
        finally:
            browser.close()
    store.close()


def test_metrics_detail_needs_a_token_when_web_users_are_configured(site: tuple[Lab, str]) -> None:
    _, base = site
    status, anonymous, _ = call(f"{base}/metrics")
    who = 'site="default",vantage="internal"'  # the instance's site and vantage are no per-system detail
    assert status == 200 and f'sentinel_estate_systems{{{who},tier="district"}} 1' in anonymous
    assert "sentinel_sweep_jobs_planned" in anonymous and 'system="' not in anonymous and "department=" not in anonymous
    status, detail, _ = call(f"{base}/metrics", "op-token")
    assert status == 200 and 'system="permits"' in detail and "sentinel_findings_open{" in detail
    assert call(f"{base}/metrics", "owner-token")[1].count('system="') == 0  # an owner is not the whole estate
    assert call(f"{base}/probe?target=permits&module=tcp_ports")[0] == 401


def test_sweep_progress_comes_from_the_runner(lab: Lab) -> None:
    seen: list[tuple[int, int, int]] = []
    app = Sentinel(lab.settings)
    try:
        outcome = asyncio.run(app.sweep(progress=lambda p: seen.append((p.done, p.total, p.findings))))
        record = app.store.sweeps(1)[0]
    finally:
        app.close()
    total = len(outcome.observations and seen) and seen[-1][1]
    assert [d for d, _, _ in seen] == list(range(1, total + 1))  # one call per finished job, in order
    assert seen[-1][2] >= 1  # the open high-risk port, seen before the sweep's end
    assert record["planned_jobs"] == total
    stream = io.StringIO()
    clock = iter([0.0, 5.0, 11.0, 25.0]).__next__
    reporter = ScanProgress("scan", 4, stream=stream, interval=10, clock=clock, interactive=False)
    with reporter:
        for done in (1, 2, 3):
            reporter.update(SweepProgress(4, done=done, findings=done * 2))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "scan: 2/4 (50%), 11 s elapsed, ETA 11 s, 4 findings so far",
        "scan: 3/4 (75%), 25 s elapsed, ETA 8 s, 6 findings so far",
    ]


def test_alerts_follow_prints_lines_when_piped(lab: Lab) -> None:
    lab.scan()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentinel", "alerts", "--follow", "--interval", "0.3", "--config", str(lab.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().split("\t")
        assert first[1] == "active" and first[5] == "permits" and first[6] == OWNER_DEPT
        store = SqliteStore(lab.settings.store)
        FindingTracker(store).apply(
            [Verdict(RULES["tls_cert_not_expired"], "portal", f"{NET}.30:443", True, {})], datetime.now(UTC)
        )
        store.close()
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline and "\tnew\t" not in line:
            line = proc.stdout.readline()
        assert "\tnew\t" in line and "\tportal\t" in line
    finally:
        proc.terminate()
        proc.wait(10)


def test_overdue_findings_escalate_to_the_owner_once(lab: Lab) -> None:
    lab.scan()
    store = SqliteStore(lab.settings.store)
    later = datetime.now(UTC) + timedelta(days=8)  # past the 7-day SLA of a high finding
    settings = NotifySettings.model_validate({"webhooks": [{"url": "http://127.0.0.1:9/x", "department": OWNER_DEPT}]})
    notifier = Notifier(settings, lab.registry, store, policy=FindingsSettings())
    (digest,) = notifier.due(later)
    assert {e.kind for e in digest.events} == {"new", "overdue"}
    (planned,) = notifier.run(later, dry_run=True).planned
    assert "1 个已超期未整改" in planned.subject
    assert {e.kind for e in Notifier(settings, lab.registry, store).due(later)[0].events} == {"new"}  # no policy
    store.close()
