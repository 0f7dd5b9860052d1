"""findings/lifecycle.py through the tracker: a finding opens, dedupes, survives an unobservable sweep, resolves
on evidence, reopens as a regression, is suppressed until its expiry, and every change is in its history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sentinel.findings.lifecycle import InvalidTransitionError, LifecycleEvent
from sentinel.findings.tracker import FindingTracker
from sentinel.models import FindingStatus, Observation, ObservationStatus
from sentinel.registry.loader import load_registry_text
from sentinel.store import SqliteStore
from tests.support.engine_lab import shipped_ruleset

T0 = datetime(2026, 11, 1, tzinfo=UTC)

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
    rules = shipped_ruleset()
    tracker = FindingTracker(SqliteStore(tmp_path / "s.db"))

    def sweep(state: str, at: datetime, status: ObservationStatus = ObservationStatus.OK) -> None:
        tracker.apply(rules.evaluate_stateless([port_obs(state, at, status)], registry), at)

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
