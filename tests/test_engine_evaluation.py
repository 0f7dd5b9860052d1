"""One evaluation per call: `AnomalyEngine.evaluate(observations, now, active_targets)` runs every rule,
stateless and with memory, over observations of any source (here capture windows of traffic detections),
and keeps nothing of a call but the rules' memory."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sentinel.engine.anomaly import AnomalyEngine
from sentinel.engine.rule import Rule
from sentinel.engine.ruleset import RuleSet, Verdict
from sentinel.engine.state import MemoryState, StoreState
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import Registry
from sentinel.registry.scope import Scope
from sentinel.store import SqliteStore
from sentinel.traffic.addresses import UNREGISTERED
from sentinel.traffic.analyze import with_unregistered
from tests.support.engine_lab import T0, make_registry, make_rule, make_system

WINDOW = timedelta(minutes=1)
SCANNER = "203.0.113.9 -> *:22/tcp"
REG = with_unregistered(make_registry(make_system("sys-a")))


def scan_rule(**extra: Any) -> Rule:
    """A horizontal-scan rule that must hold in three consecutive capture windows before it opens."""
    base: dict[str, Any] = {
        "id": "traffic_scan_sustained",
        "title": "Sustained horizontal scan",
        "category": "threat",
        "observation": "traffic.portscan",
        "condition": {"field": "scan.hosts", "op": "ge", "value": 20},
        "evidence": ["source_ip", "capture"],
        "remediation": "Block the source.",
        "for": 3,
    }
    return make_rule(**{**base, **extra})


def scan(window: int, hosts: int = 40, system_id: str = UNREGISTERED) -> Observation:
    """What the traffic analyser reports for one capture window (`Context.observation`'s shape)."""
    return Observation(
        "traffic.portscan",
        system_id,
        SCANNER,
        T0 + window * WINDOW,
        "sniff",
        ObservationStatus.OK,
        {
            "source_ip": "203.0.113.9",
            "destination_port": 22,
            "scan.direction": "horizontal",
            "scan.protocol": "tcp",
            "scan.hosts": hosts,
            "capture": f"eth0 window {window}",
        },
    )


def present(verdicts: list[Verdict], rule_id: str = "traffic_scan_sustained") -> list[Verdict]:
    return [v for v in verdicts if v.rule.id == rule_id and v.present]


def test_for_3_over_traffic_fires_on_the_third_capture_window() -> None:
    engine = AnomalyEngine(RuleSet([scan_rule()]), REG)  # one engine for the capture loop's lifetime
    seen = [present(engine.evaluate([scan(w)], T0 + (w + 1) * WINDOW)) for w in range(3)]
    assert [len(v) for v in seen] == [0, 0, 1]
    fired = seen[2][0]
    assert (fired.system_id, fired.target) == (UNREGISTERED, SCANNER)
    assert fired.evidence["capture"] == "eth0 window 2" and fired.evidence["scan.hosts"] == 40
    # The stateless one-shot path cannot see it: the rule has memory, so it is skipped there.
    assert RuleSet([scan_rule()]).evaluate_stateless([scan(w) for w in range(3)], REG) == []


def test_for_3_counts_across_processes_through_the_store(tmp_path: Path) -> None:
    """A `sentinel pcap analyze` per capture file: each run is a new engine over the same store."""
    store = SqliteStore(tmp_path / "s.db")
    rules = RuleSet([scan_rule()])
    fired = []
    for w in range(3):
        with store.transaction():
            fired.append(present(AnomalyEngine(rules, REG, StoreState(store)).evaluate([scan(w)], T0 + w * WINDOW)))
    assert [len(v) for v in fired] == [0, 0, 1]


def test_a_quiet_window_restarts_the_count() -> None:
    engine = AnomalyEngine(RuleSet([scan_rule()]), REG)
    batches = [[scan(0)], [scan(1)], [scan(2, hosts=3)], [scan(3)], [scan(4)], [scan(5)]]
    fired = [bool(present(engine.evaluate(b, T0 + i * WINDOW))) for i, b in enumerate(batches)]
    assert fired == [False, False, False, False, False, True]


def test_stateless_and_stateful_rules_in_one_call() -> None:
    instant = scan_rule(id="traffic_scan_seen", **{"for": 1})
    engine = AnomalyEngine(RuleSet([scan_rule(), instant]), REG)
    first = engine.evaluate([scan(0)], T0)
    assert [v.rule.id for v in present(first, "traffic_scan_seen")] == ["traffic_scan_seen"]
    assert present(first) == []


def test_unregistered_systems_are_ignored_unless_the_registry_names_them() -> None:
    bare = Registry(scope=Scope(allow=[]), systems=())
    engine = AnomalyEngine(RuleSet([scan_rule(**{"for": 1})]), bare)
    assert engine.evaluate([scan(0)], T0) == []


def test_a_call_leaves_nothing_of_itself_on_the_engine() -> None:
    """Active targets are the call's: the next call without them gets every definite verdict again."""
    http_rule = make_rule(id="http_down", title="Site down")
    engine = AnomalyEngine(RuleSet([http_rule]), REG, MemoryState())
    up = Observation("http", "sys-a", "https://www.example.cn/", T0, "http", ObservationStatus.OK, {"reachable": True})
    assert engine.evaluate([up], T0, active_targets=set()) == []  # nothing open: the absent verdict is skipped
    again = engine.evaluate([up], T0 + WINDOW)  # no active targets given: every definite verdict
    assert [(v.rule.id, v.present) for v in again] == [("http_down", False)]
    call = engine.begin({("sys-a", "https://www.example.cn/")})
    call.observe(up)
    other = engine.begin()  # a call made meanwhile has its own verdicts and targets
    assert other.verdicts == [] and other.active_targets is None
    assert [(v.rule.id, v.present) for v in engine.finish(call, T0 + 2 * WINDOW)] == [("http_down", False)]


def test_the_old_name_still_works_but_says_what_it_skips() -> None:
    rules = RuleSet([scan_rule(**{"for": 1})])
    with pytest.warns(DeprecationWarning, match="skips rules with memory"):
        old = rules.evaluate([scan(0)], REG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rules.evaluate_stateless([scan(0)], REG) == old
