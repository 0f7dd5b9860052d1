"""findings/tracker.py, the only writer of finding state: a finding resolves only on evidence that the condition is
gone (issue 11, defect 2), driven through the engine, the tracker and the store as `Sentinel.sweep` does them; the
audited `accept_baseline` action from the CLI and the web API; and a stale copy that cannot overwrite a newer state.

A precondition that fails (`when:`), an error observation, a feature still learning or missing its field all leave
the finding as it is, marked stale; a change or a baseline is never relearned away while it is reported."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner

from sentinel.cli.findings_cmd import findings
from sentinel.engine.ruleset import Verdict
from sentinel.engine.state import StoreState
from sentinel.findings.lifecycle import InvalidTransitionError, LifecycleEvent
from sentinel.findings.tracker import FindingTracker
from sentinel.models import FindingStatus
from sentinel.store import SqliteStore
from sentinel.web.auth import Authenticator, Role, UserSettings
from sentinel.web.server import WebContext, add_web_routes
from tests.support.engine_lab import LAB_REGISTRY, T0, Lab, make_rule, obs, shipped_rules

HTTP = "http://www.example.cn/"


def test_redirect_finding_is_not_resolved_while_the_site_is_down(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "s.db", shipped_rules()["http_redirects_to_https"])
    lab.sweep(obs(HTTP, scheme="http", reachable=True, redirects_to_https=False))
    found = lab.finding("http_redirects_to_https", HTTP)
    assert found is not None and found.status == FindingStatus.OPEN and not found.is_stale
    confirmed = found.last_seen

    # The site goes down: the probe reports an error observation, then a plain "unreachable" one.
    lab.sweep(obs(HTTP, status="error", scheme="http", reachable=False, error_kind="connect"))
    lab.sweep(obs(HTTP, scheme="http", reachable=False))
    found = lab.finding("http_redirects_to_https", HTTP)
    assert found is not None and found.status == FindingStatus.OPEN  # not resolved
    assert found.is_stale and found.stale_since == T0 + timedelta(minutes=10)
    assert found.last_seen == confirmed  # "last confirmed at"
    assert found.to_dict()["stale_since"] is not None

    # Back up, still without redirect: the same finding, confirmed again, no "regression".
    lab.sweep(obs(HTTP, scheme="http", reachable=True, redirects_to_https=False))
    found = lab.finding("http_redirects_to_https", HTTP)
    assert found is not None and found.status == FindingStatus.OPEN and not found.regression
    assert not found.is_stale and found.occurrences == 2
    events = lab.store.finding_events(found.id)
    assert [e["to_status"] for e in events] == ["open"]

    # Fixed: now it resolves, on evidence.
    lab.sweep(obs(HTTP, scheme="http", reachable=True, redirects_to_https=True))
    found = lab.finding("http_redirects_to_https", HTTP)
    assert found is not None and found.status == FindingStatus.RESOLVED


def test_an_error_observation_never_clears_a_finding(tmp_path: Path) -> None:
    # A condition that a bare error observation makes false (the field is there, the probe could not look).
    plain = make_rule(id="plain_rule", condition={"field": "missing_header", "op": "eq", "value": True})
    gated = make_rule(id="gated_rule", condition={"field": "missing_header", "op": "eq", "value": True}, clear_after=2)
    lab = Lab(tmp_path / "s.db", plain, gated)
    lab.sweep(obs(HTTP, missing_header=True))
    for _ in range(3):
        lab.sweep(obs(HTTP, status="error", missing_header=False, error_kind="timeout"))
    for rule_id in ("plain_rule", "gated_rule"):
        found = lab.finding(rule_id, HTTP)
        assert found is not None and found.status == FindingStatus.OPEN and found.is_stale, rule_id
    lab.sweep(obs(HTTP, missing_header=False))
    lab.sweep(obs(HTTP, missing_header=False))
    assert all(
        (f := lab.finding(r, HTTP)) is not None and f.status == FindingStatus.RESOLVED
        for r in ("plain_rule", "gated_rule")
    )


def test_defacement_stays_open_until_the_page_is_restored(tmp_path: Path) -> None:
    page = "https://www.example.cn/"
    lab = Lab(tmp_path / "s.db", shipped_rules()["web_content_changed"])
    good = {"content.normalized_sha256": "aa", "content.normalized_text": "欢迎访问\n政务公开"}
    bad = {"content.normalized_sha256": "bb", "content.normalized_text": "hacked by x\n政务公开"}
    lab.sweep(obs(page, "web_integrity", **good))
    for _ in range(6):  # well past the old `relearn_after: 3`
        lab.sweep(obs(page, "web_integrity", **bad))
    found = lab.finding("web_content_changed", page)
    assert found is not None and found.status == FindingStatus.OPEN and found.occurrences == 6
    assert "+hacked by x" in found.evidence["change.diff"]
    lab.sweep(obs(page, "web_integrity", status="error", error_kind="protocol", status_code=503))
    found = lab.finding("web_content_changed", page)
    assert found is not None and found.status == FindingStatus.OPEN and found.is_stale
    lab.sweep(obs(page, "web_integrity", **good))
    found = lab.finding("web_content_changed", page)
    assert found is not None and found.status == FindingStatus.RESOLVED


def test_a_change_rule_missing_its_field_cannot_tell(tmp_path: Path) -> None:
    ports = make_rule(
        id="ports_rule",
        observation="host",
        change={"field": "open_ports"},
        condition={"field": "change.added", "op": "exists"},
    )
    lab = Lab(tmp_path / "s.db", ports)
    lab.sweep(obs("h", "host", open_ports=[443]))
    lab.sweep(obs("h", "host", open_ports=[443, 6379]))
    assert (f := lab.finding("ports_rule", "h")) is not None and f.status == FindingStatus.OPEN
    lab.sweep(obs("h", "host", status="error", error_kind="timeout"))  # no open_ports: `exists` would read false
    lab.sweep(obs("h", "host", reachable=False))
    assert (f := lab.finding("ports_rule", "h")) is not None and f.status == FindingStatus.OPEN and f.is_stale


def test_a_baseline_does_not_relearn_an_anomaly_it_reports(tmp_path: Path) -> None:
    slow = make_rule(
        id="slow_rule",
        baseline={"field": "latency_ms", "learn": 5, "min_spread": 10},
        condition={
            "all": [
                {"field": "baseline.score", "op": "ge", "value": 4},
                {"field": "latency_ms", "op": "gt", "value": 500},
            ]
        },
    )
    lab = Lab(tmp_path / "s.db", slow)
    for v in [100, 110, 95, 105, 100, 102]:
        lab.sweep(obs(HTTP, latency_ms=v))
    for _ in range(12):  # more than `learn` outliers in a row
        lab.sweep(obs(HTTP, latency_ms=900))
    assert (f := lab.finding("slow_rule", HTTP)) is not None and f.status == FindingStatus.OPEN and f.occurrences == 12
    lab.sweep(obs(HTTP, latency_ms=104))
    assert (f := lab.finding("slow_rule", HTTP)) is not None and f.status == FindingStatus.RESOLVED

    # A shift the condition does not flag (under 500 ms) is still absorbed as the new level.
    for _ in range(8):
        lab.sweep(obs(HTTP, latency_ms=300))
    state = StoreState(lab.store).load()[("slow_rule", "sys-a", HTTP)]
    assert state["bl"]["m"] > 250  # relearned at the new level


# -- accept_baseline --------------------------------------------------------------------------------------------
PAGE = "https://www.example.cn/"
GOOD = {"content.normalized_sha256": "aa", "content.normalized_text": "欢迎访问\n政务公开"}
NEW = {"content.normalized_sha256": "cc", "content.normalized_text": "欢迎访问\n新栏目"}


def defaced(tmp_path: Path) -> Lab:
    lab = Lab(tmp_path / "s.db", shipped_rules()["web_content_changed"], shipped_rules()["http_redirects_to_https"])
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
    lab = Lab(tmp_path / "s.db", shipped_rules()["web_content_changed"])
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
        add_web_routes(app, WebContext(lab.store, LAB_REGISTRY, Authenticator(users, secret=b"s" * 32)))
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


def test_a_stale_copy_cannot_overwrite_a_newer_state(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    rules = shipped_rules()
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
