"""Issue 11, defect 2: a finding resolves only on evidence that the condition is gone.

Driven end to end through the engine, the tracker and the store (as `Sentinel.sweep` does): a precondition
that fails (`when:`), an error observation, a feature still learning or missing its field all leave the
finding as it is, marked stale; a change or a baseline is never relearned away while it is reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from sentinel.engine.anomaly import AnomalyEngine
from sentinel.engine.loader import load_rules
from sentinel.engine.paths import shipped_rules_dir
from sentinel.engine.rule import Rule
from sentinel.engine.ruleset import RuleSet
from sentinel.engine.state import StoreState
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Finding, FindingStatus, Observation, ObservationStatus
from sentinel.models.finding import fingerprint
from sentinel.registry.models import Endpoint, Owner, Registry, System, Tier
from sentinel.registry.scope import Scope
from sentinel.ruledev.lint import lint
from sentinel.store import SqliteStore

T0 = datetime(2026, 3, 2, tzinfo=UTC)
SHIPPED = {r.id: r for r in load_rules([shipped_rules_dir()])}
REG = Registry(
    scope=Scope(allow=["example.cn"]),
    systems=(
        System(
            id="sys-a",
            name="sys-a",
            owner=Owner(department="d"),
            tier=Tier.CITY,
            mlps_level=3,
            endpoints=[Endpoint(url="http://www.example.cn/")],
            tags=["e-gov"],
        ),
    ),
)


def rule(**extra: Any) -> Rule:
    base: dict[str, Any] = {
        "id": "test_rule",
        "title": "Test rule",
        "severity": "high",
        "category": "availability",
        "observation": "http",
        "condition": {"field": "reachable", "op": "eq", "value": False},
        "remediation": "Fix it.",
    }
    base.update(extra)
    return Rule.model_validate(base)


class Lab:
    """Sweeps through engine + tracker on a real store, the way `Sentinel.sweep` wires them."""

    def __init__(self, path: Path, *rules: Rule) -> None:
        self.store = SqliteStore(path)
        self.rules = RuleSet(rules)
        self.tracker = FindingTracker(self.store)
        self.now = T0

    def sweep(self, *observations: Observation) -> None:
        self.now += timedelta(minutes=5)
        engine = AnomalyEngine(self.rules, REG, StoreState(self.store))  # a fresh process per sweep, as `run` does
        with self.store.transaction():
            active = {
                (f.system_id, f.target)
                for f in self.store.list_findings(statuses=[FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED])
            }
            self.tracker.apply(engine.evaluate(observations, self.now, active), self.now)

    def finding(self, rule_id: str, target: str) -> Finding | None:
        return self.store.get_finding(fingerprint(rule_id, "sys-a", target))


def obs(target: str, kind: str = "http", status: str = "ok", **data: Any) -> Observation:
    return Observation(kind, "sys-a", target, T0, "test", ObservationStatus(status), data)


HTTP = "http://www.example.cn/"


def test_redirect_finding_is_not_resolved_while_the_site_is_down(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "s.db", SHIPPED["http_redirects_to_https"])
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
    plain = rule(id="plain_rule", condition={"field": "missing_header", "op": "eq", "value": True})
    gated = rule(id="gated_rule", condition={"field": "missing_header", "op": "eq", "value": True}, clear_after=2)
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
    lab = Lab(tmp_path / "s.db", SHIPPED["web_content_changed"])
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
    ports = rule(
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
    slow = rule(
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


def test_when_guard_is_checked_before_the_memory_is_fed() -> None:
    guarded = rule(
        id="guarded_rule",
        observation="web_integrity",
        when={"field": "status_code", "op": "lt", "value": 400},
        change={"field": "sha"},
        condition={"field": "change.changed", "op": "eq", "value": True},
    )
    engine = AnomalyEngine(RuleSet([guarded]), REG)
    target = "https://www.example.cn/"
    seen = [
        engine.evaluate([obs(target, "web_integrity", status_code=code, sha=sha)], T0, {("sys-a", target)})
        for code, sha in [(500, "error-page"), (200, "a"), (503, "other-error"), (200, "a")]
    ]
    assert [[v.present for v in s] for s in seen] == [[None], [None], [None], [False]]  # the error page never learned


def test_when_may_not_read_derived_fields_nor_guard_an_absence() -> None:
    with pytest.raises(ValidationError, match="derived"):
        rule(when={"field": "baseline.learning", "op": "eq", "value": False}, baseline={"field": "latency_ms"})
    with pytest.raises(ValidationError, match="absence"):
        rule(condition=None, absence={"after": "1h"}, when={"field": "reachable", "op": "eq", "value": True})


def test_lint_flags_a_precondition_buried_in_all(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    (folder / "tests").mkdir(parents=True)
    (folder / "site_buried.yaml").write_text(
        "id: site_buried\ntitle: Buried precondition\nseverity: low\ncategory: configuration\nobservation: http\n"
        "condition:\n  all:\n    - {field: reachable, op: eq, value: true}\n    - {field: x, op: eq, value: false}\n"
        "remediation: Fix it.\n",
        encoding="utf-8",
    )
    (folder / "tests" / "site_buried.yaml").write_text(
        "rule: site_buried\ncases:\n"
        "  - {name: p, expect: present, observation: {target: t, data: {reachable: true, x: false}}}\n"
        "  - {name: a, expect: absent, observation: {target: t, data: {reachable: true, x: true}}}\n",
        encoding="utf-8",
    )
    report = lint([folder], frameworks=[])
    messages = [(p.line, p.message) for p in report.problems]
    assert any(line == 8 and "'reachable eq True' is a precondition" in m and "when:" in m for line, m in messages), (
        messages
    )
