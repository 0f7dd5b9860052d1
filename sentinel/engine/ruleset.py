"""Rules indexed by what they read, and one-shot evaluation of observations against the stateless ones.

The index is two-level: observation kind → rules that read it, and (kind, system) → the rules of that
kind that apply to that system (tier, level, CII, tags), computed once per set of alike systems, with
their skip index (`sentinel.engine.skip`) shared by equal rule lists.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable

from sentinel.engine.entry import Entry
from sentinel.engine.evaluation import Evaluation
from sentinel.engine.rule import AppliesTo, Rule
from sentinel.engine.skip import KindIndex
from sentinel.engine.verdict import Verdict
from sentinel.models import Observation
from sentinel.registry.models import Registry, System

__all__ = ["RuleSet", "Verdict"]  # Verdict re-exported: the tracker, sinks and tests import it from here


class RuleSet:
    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = [r for r in rules if r.enabled]
        self._by_kind: dict[str, list[Rule]] = defaultdict(list)
        self._entries: dict[str, list[Entry]] = defaultdict(list)
        for number, rule in enumerate(self.rules):
            entry = Entry.of(rule, number)
            for kind in rule.observation:
                self._by_kind[kind].append(rule)
                self._entries[kind].append(entry)
        self._applicable: dict[tuple[str, str], list[Entry]] = {}
        self._alike: dict[tuple[object, ...], list[Entry]] = {}  # by kind and applicability signature
        self._index_of_list: dict[int, KindIndex] = {}
        self._indexes: dict[tuple[str, str], KindIndex] = {}
        self._shared: dict[tuple[str, ...], KindIndex] = {}
        self._registry: Registry | None = None

    def __len__(self) -> int:
        return len(self.rules)

    @property
    def by_id(self) -> dict[str, Rule]:
        """Rule id → rule (renderers look up a finding's rule for its text in another language)."""
        return {r.id: r for r in self.rules}

    def for_kind(self, kind: str) -> list[Rule]:
        return self._by_kind.get(kind, [])

    def entries(self, kind: str) -> list[Entry]:
        return self._entries.get(kind, [])

    @property
    def kinds(self) -> set[str]:
        return set(self._by_kind)

    def applicable(self, kind: str, system: System, registry: Registry) -> list[Entry]:
        """The rules reading `kind` that apply to `system` (cached per registry)."""
        if registry is not self._registry:
            self._applicable.clear()
            self._alike.clear()
            self._index_of_list.clear()  # keyed by the ids of lists `_alike` held
            self._indexes.clear()
            self._registry = registry
        key = (kind, system.id)
        found = self._applicable.get(key)
        if found is None:
            alike = (kind, *AppliesTo.signature(system))
            found = self._alike.get(alike)
            if found is None:
                found = [e for e in self._entries.get(kind, ()) if e.rule.applies_to.matches(system)]
                self._alike[alike] = found
            self._applicable[key] = found
        return found

    def index(self, kind: str, system: System, registry: Registry) -> KindIndex:
        """The skip index of the rules reading `kind` that apply to `system` (shared by equal rule sets)."""
        entries = self.applicable(kind, system, registry)
        key = (kind, system.id)
        found = self._indexes.get(key)
        if found is None:
            found = self._index_of_list.get(id(entries))  # systems alike share their list of entries
            if found is None:
                signature = (kind, *(e.rule.id for e in entries))
                found = self._shared.get(signature)
                if found is None:
                    found = self._shared[signature] = KindIndex(entries)
                self._index_of_list[id(entries)] = found
            self._indexes[key] = found
        return found

    def evaluate_stateless(self, observations: Iterable[Observation], registry: Registry) -> list[Verdict]:
        """Definite verdicts of the rules WITHOUT memory; rules with `for`, `clear_after`, `flapping`, `change`,
        `baseline`, `window` or `absence` are skipped. `AnomalyEngine.evaluate` covers every rule.

        An unknown outcome (field not observed, precondition not met) yields nothing, and so does a false
        one on an error observation: a probe that could not observe never shows a problem gone."""
        call = Evaluation(None)
        judge = call.judge
        kinds = self._entries
        system_of = dict(registry.by_id).get
        for obs in observations:
            if obs.kind not in kinds:
                continue
            system = system_of(obs.system_id)
            if system is not None:
                judge(self.applicable(obs.kind, system, registry), obs, system, True, False)
        return call.verdicts

    def evaluate(self, observations: Iterable[Observation], registry: Registry) -> list[Verdict]:
        """Deprecated alias of `evaluate_stateless`: it silently skipped the rules with memory."""
        warnings.warn(
            "RuleSet.evaluate skips rules with memory: call RuleSet.evaluate_stateless, or AnomalyEngine.evaluate "
            "for every rule",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.evaluate_stateless(observations, registry)
