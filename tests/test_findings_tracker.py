"""The tracker's operator action `accept_baseline` (issue 11): an audited way to end a change/baseline finding
by making the changed value the rule's new learned value, from the CLI and the web API."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from sentinel.cli.findings_cmd import findings
from sentinel.findings.lifecycle import InvalidTransitionError, LifecycleEvent
from sentinel.models import FindingStatus
from sentinel.web.auth import Authenticator, Role, UserSettings
from sentinel.web.server import WebContext, add_web_routes
from tests.test_engine_guard import REG, SHIPPED, Lab, obs

PAGE = "https://www.example.cn/"
GOOD = {"content.normalized_sha256": "aa", "content.normalized_text": "欢迎访问\n政务公开"}
NEW = {"content.normalized_sha256": "cc", "content.normalized_text": "欢迎访问\n新栏目"}


def defaced(tmp_path: Path) -> Lab:
    lab = Lab(tmp_path / "s.db", SHIPPED["web_content_changed"], SHIPPED["http_redirects_to_https"])
    lab.sweep(obs(PAGE, "web_integrity", **GOOD))
    lab.sweep(obs(PAGE, "web_integrity", **NEW))
    lab.sweep(obs(PAGE, "web_integrity", **NEW))
    return lab


def test_accepting_the_new_content_resolves_and_becomes_the_baseline(tmp_path: Path) -> None:
    lab = defaced(tmp_path)
    found = lab.finding("web_content_changed", PAGE)
    assert found is not None and found.status == FindingStatus.OPEN
    lab.tracker.act(found, LifecycleEvent.ACCEPT_BASELINE, "alice", "new section published (ticket 42)", lab.now)
    assert found.status == FindingStatus.RESOLVED and found.status_by == "alice"
    last = lab.store.finding_events(found.id)[-1]
    assert last["actor"] == "alice" and last["from_status"] == "open" and last["to_status"] == "resolved"
    assert "ticket 42" in last["reason"] and "cc" in last["reason"]

    lab.sweep(obs(PAGE, "web_integrity", **NEW))  # the accepted content: nothing to report
    again = lab.finding("web_content_changed", PAGE)
    assert again is not None and again.status == FindingStatus.RESOLVED and again.occurrences == 2
    lab.sweep(obs(PAGE, "web_integrity", **GOOD))  # the old content is now the change, diffed against the accepted
    again = lab.finding("web_content_changed", PAGE)
    assert again is not None and again.status == FindingStatus.OPEN and again.regression
    assert "-新栏目" in again.evidence["change.diff"]


def test_accept_baseline_is_refused_for_rules_without_memory(tmp_path: Path) -> None:
    lab = defaced(tmp_path)
    lab.sweep(obs("http://www.example.cn/", scheme="http", reachable=True, redirects_to_https=False))
    plain = lab.finding("http_redirects_to_https", "http://www.example.cn/")
    assert plain is not None
    with pytest.raises(InvalidTransitionError, match="keeps no baseline"):
        lab.tracker.act(plain, LifecycleEvent.ACCEPT_BASELINE, "alice", "why not", lab.now)
    still = lab.finding("http_redirects_to_https", "http://www.example.cn/")
    assert still is not None and still.status == FindingStatus.OPEN
    assert [e["to_status"] for e in lab.store.finding_events(plain.id)] == ["open"]  # nothing recorded


def test_cli_accept_baseline_and_stale_display(tmp_path: Path) -> None:
    lab = defaced(tmp_path)
    found = lab.finding("web_content_changed", PAGE)
    assert found is not None
    lab.sweep(obs(PAGE, "web_integrity", status="error", error_kind="timeout"))
    runner = CliRunner()
    store = str(tmp_path / "s.db")
    shown = runner.invoke(findings, ["show", found.id[:12], "--store", store])
    assert shown.exit_code == 0, shown.output
    assert (
        "could not be confirmed since" in shown.output
        and f"last confirmed at {found.last_seen.isoformat()}" in shown.output
    )
    listed = runner.invoke(findings, ["list", "--store", store, "--format", "json"])
    row = next(r for r in json.loads(listed.output) if r["id"] == found.id)
    assert row["stale_since"] == (lab.now).isoformat() and row["last_confirmed"] == found.last_seen.isoformat()

    missing = runner.invoke(findings, ["accept-baseline", found.id[:12], "--store", store])
    assert missing.exit_code == 2 and "--reason" in missing.output
    done = runner.invoke(
        findings,
        ["accept-baseline", found.id[:12], "--reason", "published by the editors", "--by", "bob", "--store", store],
    )
    assert done.exit_code == 0, done.output
    assert "now resolved" in done.output
    lab.store.close()
    lab = Lab(tmp_path / "s.db", SHIPPED["web_content_changed"])
    lab.now += timedelta(hours=1)
    lab.sweep(obs(PAGE, "web_integrity", **NEW))
    after = lab.finding("web_content_changed", PAGE)
    assert after is not None and after.status == FindingStatus.RESOLVED and not after.is_stale


def test_web_api_accept_baseline_for_operators_only(tmp_path: Path) -> None:
    lab = defaced(tmp_path)
    found = lab.finding("web_content_changed", PAGE)
    assert found is not None
    users = [
        UserSettings(name="olga", role=Role.OPERATOR, token="op-token-123456"),
        UserSettings(name="aud", role=Role.AUDITOR, token="aud-token-123456"),
    ]

    async def scenario() -> None:
        app = web.Application()
        add_web_routes(app, WebContext(lab.store, REG, Authenticator(users, secret=b"s" * 32)))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/api/findings/{found.id}/accept-baseline"
        try:
            async with aiohttp.ClientSession() as http:
                denied = await http.post(
                    url, json={"reason": "x"}, headers={"Authorization": "Bearer aud-token-123456"}
                )
                assert denied.status == 403
                ok = await http.post(
                    url, json={"reason": "new page"}, headers={"Authorization": "Bearer op-token-123456"}
                )
                body = await ok.json()
                assert ok.status == 200, body
                assert body["status"] == "resolved" and body["status_by"] == "olga"
                again = await http.post(
                    url, json={"reason": "again"}, headers={"Authorization": "Bearer op-token-123456"}
                )
                assert again.status == 409 and "cannot accept_baseline" in (await again.json())["error"]
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    assert lab.store.finding_events(found.id)[-1]["actor"] == "olga"
