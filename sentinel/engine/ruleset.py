"""Rules indexed by the observation kind they read, and evaluation of observations against them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sentinel.engine.rule import Rule
from sentinel.models import Observation
from sentinel.registry.models import Registry


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one rule on one target of one system, in one sweep."""

    rule: Rule
    system_id: str
    target: str
    present: bool  # True: the problem was seen; False: checked and not seen
    evidence: dict[str, Any] = field(default_factory=dict)


class RuleSet:
    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = [r for r in rules if r.enabled]
        self._by_kind: dict[str, list[Rule]] = defaultdict(list)
        for rule in self.rules:
            for kind in rule.observation:
                self._by_kind[kind].append(rule)

    def __len__(self) -> int:
        return len(self.rules)

    def for_kind(self, kind: str) -> list[Rule]:
        return self._by_kind.get(kind, [])

    def evaluate(self, observations: Iterable[Observation], registry: Registry) -> list[Verdict]:
        """Definite verdicts only: an unknown outcome (field not observed) yields nothing."""
        verdicts: list[Verdict] = []
        applies: dict[tuple[str, str], bool] = {}
        for obs in observations:
            system = registry.system(obs.system_id)
            if system is None:
                continue
            for rule in self._by_kind.get(obs.kind, ()):
                key = (rule.id, obs.system_id)
                ok = applies.get(key)
                if ok is None:
                    ok = applies[key] = rule.applies_to.matches(system)
                if not ok:
                    continue
                outcome = rule.evaluate(obs)
                if outcome is None:
                    continue
                verdicts.append(
                    Verdict(rule, obs.system_id, obs.target, outcome, rule.evidence_of(obs) if outcome else {})
                )
        return verdicts
