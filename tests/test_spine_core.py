"""Conditions, rule loading, settings precedence, the store, and the lifecycle through the tracker."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sentinel.config.settings import load_settings
from sentinel.engine.conditions import Condition, compile_condition
from sentinel.engine.loader import load_rules
from sentinel.engine.paths import shipped_rules_dir
from sentinel.engine.ruleset import RuleSet
from sentinel.errors import InputError, StoreError
from sentinel.findings.lifecycle import InvalidTransitionError, LifecycleEvent
from sentinel.findings.tracker import FindingTracker
from sentinel.models import FindingStatus, Observation, ObservationStatus
from sentinel.registry.loader import load_registry_text
from sentinel.store import SqliteStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def cond(tree: dict[str, object]) -> Callable[[dict[str, object]], bool | None]:
    compiled = compile_condition(Condition.model_validate(tree))
    return lambda data: compiled(data.get)


def test_three_valued_logic() -> None:
    c = cond({"all": [{"field": "a", "op": "eq", "value": 1}, {"field": "b", "op": "gt", "value": 2}]})
    assert c({"a": 1, "b": 3}) is True
    assert c({"a": 2}) is False  # a definite False wins over an unknown
    assert c({"a": 1}) is None  # b unknown: neither pass nor fail
    d = cond({"any": [{"field": "a", "op": "eq", "value": 1}, {"not": {"field": "b", "op": "exists"}}]})
    assert d({"b": 1}) is None and d({"a": 0, "b": 1}) is False and d({}) is True and d({"a": 1}) is True
    assert cond({"field": "x", "op": "lt", "value": 5})({"x": "text"}) is None  # type mismatch is unknown
    assert cond({"field": "x", "op": "matches", "value": "^nginx/1\\."})({"x": "nginx/1.18"}) is True
    assert cond({"field": "x", "op": "in", "value": ["TLSv1"]})({"x": "TLSv1"}) is True


@pytest.mark.parametrize(
    "tree",
    [
        {"field": "a"},
        {"field": "a", "op": "lt"},
        {"field": "a", "op": "in", "value": 3},
        {"field": "a", "op": "matches", "value": "("},
        {"all": [], "field": "a", "op": "exists"},
        {"field": "a", "op": "exists", "value": 1},
        {"field": "a", "op": "eval", "value": "__import__('os')"},
    ],
)
def test_bad_conditions_are_rejected(tree: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Condition.model_validate(tree)


def test_shipped_rules_load_and_index_by_kind() -> None:
    rules = RuleSet(load_rules([shipped_rules_dir()]))
    assert len(rules) >= 12
    assert {r.id for r in rules.for_kind("tls")} >= {"tls_cert_not_expired", "tls_protocol_modern"}
    assert all(r.remediation and r.controls.flat() for r in rules.rules)


def test_rule_file_errors_are_located(write_file: Callable[[str, str], Path]) -> None:
    write_file(
        "rules/a/wrong_name.yaml",
        """
        id: other_name
        title: Something
        severity: severe
        category: exposure
        observation: port
        condition: {field: state, op: eq, value: open}
        remediation: Close it.
        colour: red
        """,
    )
    path = write_file("rules/b/ok_rule.yaml", "id: ok_rule\n")
    with pytest.raises(InputError) as err:
        load_rules([path.parent.parent])
    text = str(err.value)
    assert "wrong_name.yaml:3: severity" in text and "wrong_name.yaml:8: unknown key 'colour'" in text
    assert "ok_rule.yaml:1: title: Field required" in text


def test_settings_precedence(write_file: Callable[[str, str], Path]) -> None:
    cfg = write_file("s.yaml", "store: from-file.db\ncollectors: {connect_timeout: 7, retries: 2}\n")
    env = {"SENTINEL_STORE": "/env.db", "SENTINEL_COLLECTORS__CONNECT_TIMEOUT": "4"}
    s = load_settings(cfg, {"store": None}, env)
    assert str(s.store) == "/env.db" and s.collectors.connect_timeout == 4 and s.collectors.retries == 2
    s = load_settings(cfg, {"store": "/flag.db"}, env)
    assert str(s.store) == "/flag.db"
    bad = write_file("bad.yaml", "collectors:\n  connect_timeout: -1\n  typo: 1\n")
    with pytest.raises(InputError) as err:
        load_settings(bad, {}, {})
    assert {p.line for p in err.value.problems} == {2, 3}


def test_store_schema_and_append_only_audit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    assert store.schema_version("core") >= 1
    store.add_events([("f1", T0, "alice", None, "open", "x")])
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.connection.execute("DELETE FROM finding_events")
    store.connection.execute("UPDATE schema_versions SET version = 99 WHERE component = 'core'")
    store.close()
    with pytest.raises(StoreError, match="newer than this Sentinel"):
        SqliteStore(tmp_path / "s.db")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match=r"junk\.db"):
        SqliteStore(tmp_path / "junk.db")


REGISTRY = """
scope: {allow: ["10.0.0.0/8"]}
systems:
  - {id: a, name: A, owner: {department: IT}, tier: city, mlps_level: 3, endpoints: [{host: 10.0.0.1, ports: [22]}]}
"""


def port_obs(state: str, at: datetime, status: ObservationStatus = ObservationStatus.OK) -> Observation:
    data = {} if status == ObservationStatus.ERROR else {"state": state, "declared": False, "high_risk": True}
    return Observation("port", "a", "10.0.0.1:3306/tcp", at, "tcp_ports", status, data)


def test_lifecycle_through_sweeps(tmp_path: Path) -> None:
    registry = load_registry_text(REGISTRY)
    rules = RuleSet(load_rules([shipped_rules_dir()]))
    tracker = FindingTracker(SqliteStore(tmp_path / "s.db"))

    def sweep(state: str, at: datetime, status: ObservationStatus = ObservationStatus.OK) -> None:
        tracker.apply(rules.evaluate([port_obs(state, at, status)], registry), at)

    def only() -> FindingStatus:
        (f,) = tracker.store.list_findings()
        return f.status

    sweep("open", T0)
    sweep("open", T0 + timedelta(hours=1))
    (f,) = tracker.store.list_findings()
    assert f.rule_id == "port_high_risk_closed" and f.occurrences == 2 and f.status == FindingStatus.OPEN
    sweep("", T0 + timedelta(hours=2), ObservationStatus.ERROR)  # could not observe: nothing changes
    assert only() == FindingStatus.OPEN
    sweep("closed", T0 + timedelta(hours=3))
    assert only() == FindingStatus.RESOLVED
    sweep("open", T0 + timedelta(hours=4))
    (f,) = tracker.store.list_findings()
    assert f.status == FindingStatus.OPEN and f.regression and f.resolved_at is None
    tracker.act(f, LifecycleEvent.SUPPRESS, "bob", "maintenance", T0, until=T0 + timedelta(hours=5))
    sweep("open", T0 + timedelta(hours=4, minutes=30))
    assert only() == FindingStatus.SUPPRESSED
    assert [x.id for x in tracker.expire_suppressions(T0 + timedelta(hours=6))] == [f.id]
    assert only() == FindingStatus.OPEN
    (f,) = tracker.store.list_findings()
    with pytest.raises(InvalidTransitionError):
        tracker.act(f, LifecycleEvent.UNSUPPRESS, "bob", "no", T0)
    events = tracker.store.finding_events(f.id)
    assert [(e["from_status"], e["to_status"]) for e in events] == [
        (None, "open"),
        ("open", "resolved"),
        ("resolved", "open"),
        ("open", "suppressed"),
        ("suppressed", "open"),
    ]
