"""The stateful engine: hysteresis, flapping, change, baselines, windows, absence, and state that
survives a restart through the store."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sentinel.engine.anomaly import AnomalyEngine
from sentinel.engine.ruleset import RuleSet, Verdict
from sentinel.engine.state import MemoryState, StoreState
from sentinel.engine.stateful_spec import parse_duration
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import Tier
from sentinel.store import SqliteStore
from tests.support.engine_lab import LAB_REGISTRY, T0, make_registry, make_rule, make_system
from tests.support.engine_lab import obs as lab_obs

REG = make_registry(*(make_system(sid, tier=Tier.DISTRICT, district="east") for sid in ("sys-a", "sys-b")))


def obs(at: datetime, system: str = "sys-a", target: str = "https://www.example.cn/", **data: Any) -> Observation:
    return Observation("http", system, target, at, "http", ObservationStatus.OK, data)


def outcome(verdicts: list[Verdict], rule_id: str = "test_rule") -> str:
    mine = [v for v in verdicts if v.rule.id == rule_id]
    return "unknown" if not mine else ("present" if any(v.present for v in mine) else "absent")


def run(engine: AnomalyEngine, values: list[bool | None], start: datetime = T0) -> list[str]:
    out = []
    for i, down in enumerate(values):
        at = start + timedelta(minutes=5 * i)
        data = {} if down is None else {"reachable": not down}
        out.append(outcome(engine.evaluate([obs(at, **data)], at)))
    return out


def test_for_and_clear_after_hold_the_finding_steady() -> None:
    engine = AnomalyEngine(RuleSet([make_rule(**{"for": 3, "clear_after": 2})]), REG)
    # pending, pending, open, unknown keeps it, held, held... cleared only after 2 negatives
    assert run(engine, [True, True, True, None, False, True, False, False]) == [
        "unknown", "unknown", "present", "unknown", "unknown", "present", "unknown", "absent",
    ]  # fmt: skip


def test_flapping_is_its_own_finding() -> None:
    engine = AnomalyEngine(RuleSet([make_rule(flapping={"changes": 3, "within": 5})]), REG)
    results = []
    for i, down in enumerate([True, False, True, False, False, False, False, False]):
        at = T0 + timedelta(minutes=5 * i)
        results.append(outcome(engine.evaluate([obs(at, reachable=not down)], at), "test_rule_flapping"))
    assert results[:3] == ["unknown", "unknown", "unknown"]
    assert results[3] == "present"  # three flips within the last five
    assert results[-1] == "absent"  # five steady evaluations


def test_change_detects_new_ports_and_diffs_text() -> None:
    ports = make_rule(
        observation="host",
        change={"field": "open_ports", "learn": 2},
        condition={"field": "change.added", "op": "exists"},
    )
    engine = AnomalyEngine(RuleSet([ports]), REG)
    seen = [
        engine.evaluate([Observation("host", "sys-a", "h", T0 + timedelta(minutes=i), "p", data={"open_ports": p})], T0)
        for i, p in enumerate([[443], [22, 443], [443], [443, 6379]])
    ]
    # While learning the rule cannot tell (issue 11: learning never reads as "no new port").
    assert [outcome(v) for v in seen] == ["unknown", "unknown", "absent", "present"]
    assert seen[-1][0].evidence["change.added"] == [6379]

    page = make_rule(
        id="page_rule",
        change={"field": "body_sha256", "diff": "body_text", "relearn_after": 2},
        condition={"field": "change.changed", "op": "eq", "value": True},
    )
    engine = AnomalyEngine(RuleSet([page]), REG)
    bodies = [("1", "welcome\nnews"), ("2", "hacked\nnews"), ("2", "hacked\nnews"), ("1", "welcome\nnews")]
    seen = [engine.evaluate([obs(T0, body_sha256=h, body_text=t)], T0) for h, t in bodies]
    # A reported change is never relearned away (issue 11): it ends when the page is back to the learned value.
    assert [outcome(v, "page_rule") for v in seen] == ["unknown", "present", "present", "absent"]
    diff = seen[1][0].evidence["change.diff"]
    assert "-welcome" in diff and "+hacked" in diff


def test_baseline_flags_a_jump_and_relearns_a_new_level() -> None:
    slow = make_rule(
        baseline={"field": "latency_ms", "learn": 5, "min_spread": 10},
        condition={"field": "baseline.score", "op": "ge", "value": 4},
    )
    engine = AnomalyEngine(RuleSet([slow]), REG)
    values = [100, 110, 95, 105, 100, 102, 98, 900, 900, 900, 900, 900, 900]
    got = [outcome(engine.evaluate([obs(T0, latency_ms=v)], T0)) for v in values]
    assert got[:5] == ["unknown"] * 5  # learning
    assert got[5:7] == ["absent", "absent"]
    assert got[7] == "present"
    assert got[-1] == "present"  # an anomaly being reported is not relearned as the new normal (issue 11)


def test_window_needs_full_days_then_compares_the_ratio() -> None:
    weekly = make_rule(
        window={"days": 2, "min_per_day": 4, "ratio_at_least": 0.25},
        condition={"field": "reachable", "op": "eq", "value": False},
    )
    engine = AnomalyEngine(RuleSet([weekly]), REG)
    day1 = [obs(T0 + timedelta(hours=h), reachable=h != 0) for h in range(4)]  # 1 of 4 failed
    assert outcome(engine.evaluate(day1, T0 + timedelta(hours=5))) == "unknown"  # one day is not enough
    day2 = [obs(T0 + timedelta(days=1, hours=h), reachable=True) for h in range(4)]
    v = engine.evaluate(day2, T0 + timedelta(days=1, hours=5))
    assert outcome(v) == "absent"  # 1 of 8
    assert max(x.evidence.get("window.ratio", 0) for x in v) == 0
    day3 = [obs(T0 + timedelta(days=2, hours=h), reachable=h > 1) for h in range(4)]  # 2 of 4 failed
    assert outcome(engine.evaluate(day3, T0 + timedelta(days=2, hours=5))) == "present"  # days 2+3: 2 of 8


def test_absence_per_target_and_per_district() -> None:
    silent = make_rule(id="silent_target", condition=None, absence={"after": "1h"})
    district = make_rule(
        id="silent_district", condition=None, absence={"after": "1h", "scope": "district", "require_ok": True}
    )
    engine = AnomalyEngine(RuleSet([silent, district]), REG)
    first = engine.evaluate([obs(T0, reachable=True), obs(T0, system="sys-b", reachable=True)], T0)
    assert outcome(first, "silent_target") == "absent"
    later = T0 + timedelta(hours=2)
    failing = Observation("http", "sys-b", "https://www.example.cn/", later, "http", ObservationStatus.ERROR, {})
    v = engine.evaluate([failing], later)
    by_key = {(x.rule.id, x.system_id): x.present for x in v}
    assert by_key[("silent_target", "sys-a")] is True  # sys-a stopped reporting
    assert by_key[("silent_target", "sys-b")] is False  # an error observation still arrived
    assert by_key[("silent_district", "district:east")] is True  # but nothing ok from the district
    district_verdict = next(x for x in v if x.rule.id == "silent_district")
    assert district_verdict.evidence["silent_for_s"] == 7200


def test_state_survives_a_restart_in_the_store(tmp_path: Path) -> None:
    rules = RuleSet([make_rule(**{"for": 3})])
    store = SqliteStore(tmp_path / "s.db")
    assert run(AnomalyEngine(rules, REG, StoreState(store)), [True, True]) == ["unknown", "unknown"]
    store.close()
    store = SqliteStore(tmp_path / "s.db")  # a new process
    engine = AnomalyEngine(rules, REG, StoreState(store))
    assert run(engine, [True], T0 + timedelta(minutes=10)) == ["present"]
    assert store.schema_version("engine_state") == 1


def test_memory_state_round_trip_and_active_target_filter() -> None:
    backend = MemoryState()
    plain = make_rule(id="plain_rule", condition={"field": "reachable", "op": "eq", "value": False})
    engine = AnomalyEngine(RuleSet([plain, make_rule(**{"for": 2})]), REG, backend)
    # With no finding open anywhere, "absent" verdicts are dropped; a problem is still reported.
    assert engine.evaluate([obs(T0, reachable=True)], T0, active_targets=set()) == []
    v = engine.evaluate([obs(T0, reachable=False)], T0, active_targets=set())
    assert [x.rule.id for x in v if x.present] == ["plain_rule"]
    active = {("sys-a", "https://www.example.cn/")}
    v = engine.evaluate([obs(T0, reachable=True)], T0, active_targets=active)
    assert {(x.rule.id, x.present) for x in v} == {("plain_rule", False), ("test_rule", False)}
    assert AnomalyEngine(engine.rules, REG, backend).state == engine.state


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"change": {"field": "a"}, "baseline": {"field": "b"}}, "at most one of"),
        ({"condition": None}, "only an 'absence' rule"),
        ({"absence": {"after": "1h"}}, "takes no 'condition'"),
        ({"window": {"ratio_at_least": 0.1}, "for": 2}, "takes no 'for'"),
        ({"flapping": {"changes": 5, "within": 5}}, "smaller than"),
        ({"absence": {"after": "soon"}, "condition": None}, "not a duration"),
    ],
)
def test_bad_stateful_rules_are_rejected(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_rule(**extra)


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration(30) == timedelta(seconds=30)
    with pytest.raises(ValueError):
        parse_duration("-1h")


def test_when_guard_is_checked_before_the_memory_is_fed() -> None:
    guarded = make_rule(
        id="guarded_rule",
        observation="web_integrity",
        when={"field": "status_code", "op": "lt", "value": 400},
        change={"field": "sha"},
        condition={"field": "change.changed", "op": "eq", "value": True},
    )
    engine = AnomalyEngine(RuleSet([guarded]), LAB_REGISTRY)
    target = "https://www.example.cn/"
    seen = [
        engine.evaluate([lab_obs(target, "web_integrity", status_code=code, sha=sha)], T0, {("sys-a", target)})
        for code, sha in [(500, "error-page"), (200, "a"), (503, "other-error"), (200, "a")]
    ]
    assert [[v.present for v in s] for s in seen] == [[None], [None], [None], [False]]  # the error page never learned
