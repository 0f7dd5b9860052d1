"""Rules, registries and observations for the engine and tracker tests, and a `Lab` that sweeps the way
`Sentinel.sweep` wires the engine, the tracker and the store."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sentinel.engine.anomaly import AnomalyEngine
from sentinel.engine.loader import load_rules
from sentinel.engine.rule import Rule
from sentinel.engine.ruleset import RuleSet
from sentinel.engine.state import StoreState
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Finding, FindingStatus, Observation, ObservationStatus
from sentinel.models.finding import fingerprint
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Endpoint, Owner, Registry, System, Tier
from sentinel.registry.scope import Scope
from sentinel.store import SqliteStore

T0 = datetime(2026, 3, 2, tzinfo=UTC)
EXAMPLE_URL = "https://www.example.cn/"


@functools.cache
def _shipped() -> tuple[Rule, ...]:
    return tuple(load_rules([shipped_rules_dir()]))


def shipped_rules() -> dict[str, Rule]:
    """The rules shipped in rules/, by id: loaded once per session (rules are frozen models)."""
    return {r.id: r for r in _shipped()}


def shipped_ruleset() -> RuleSet:
    """A fresh RuleSet of the shipped rules, so no test shares another's applicability caches."""
    return RuleSet(_shipped())


def make_rule(**fields: Any) -> Rule:
    """A rule that opens when an http observation says `reachable: false`; `fields` replace or add keys."""
    base: dict[str, Any] = {
        "id": "test_rule",
        "title": "Test rule",
        "severity": "high",
        "category": "availability",
        "observation": "http",
        "condition": {"field": "reachable", "op": "eq", "value": False},
        "remediation": "Fix it.",
    }
    base.update(fields)
    return Rule.model_validate(base)


def make_system(
    system_id: str,
    *,
    tier: Tier = Tier.CITY,
    url: str = EXAMPLE_URL,
    district: str | None = None,
    tags: Iterable[str] = ("e-gov",),
) -> System:
    return System(
        id=system_id,
        name=system_id,
        owner=Owner(department="d"),
        tier=tier,
        mlps_level=3,
        endpoints=[Endpoint(url=url)],
        district=district,
        tags=list(tags),
    )


def make_registry(*systems: System, allow: Iterable[str] = ("example.cn",)) -> Registry:
    return Registry(scope=Scope(allow=list(allow)), systems=systems)


#: one e-gov system, sys-a, at http://www.example.cn/: what the `Lab` sweeps observe
LAB_REGISTRY = make_registry(make_system("sys-a", url="http://www.example.cn/"))


class Lab:
    """Sweeps through engine + tracker on a real store, the way `Sentinel.sweep` wires them."""

    def __init__(self, path: Path, *rules: Rule) -> None:
        self.store = SqliteStore(path)
        self.rules = RuleSet(rules)
        self.tracker = FindingTracker(self.store)
        self.now = T0

    def sweep(self, *observations: Observation) -> None:
        self.now += timedelta(minutes=5)
        engine = AnomalyEngine(self.rules, LAB_REGISTRY, StoreState(self.store))  # a fresh process per sweep
        with self.store.transaction():
            active = {
                (f.system_id, f.target)
                for f in self.store.list_findings(statuses=[FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED])
            }
            self.tracker.apply(engine.evaluate(observations, self.now, active), self.now)

    def finding(self, rule_id: str, target: str) -> Finding | None:
        return self.store.get_finding(fingerprint(rule_id, "sys-a", target))


def obs(target: str, kind: str = "http", status: str = "ok", **data: Any) -> Observation:
    """An observation of sys-a at T0 (the `Lab` judges it at its own clock)."""
    return Observation(kind, "sys-a", target, T0, "test", ObservationStatus(status), data)
