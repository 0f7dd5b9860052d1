"""Rules indexed by what they read, and one-shot evaluation of observations against them.

The index is two-level: observation kind → rules that read it, and (kind, system) → the rules of that
kind that apply to that system (tier, level, CII, tags), computed once per system. Evaluating an
observation is then one closure call per candidate rule over a flattened field view.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

from sentinel.engine.conditions import Compiled, Condition, Getter
from sentinel.engine.rule import Rule
from sentinel.models import Observation
from sentinel.registry.models import Registry, System


class Verdict(NamedTuple):
    """The outcome of one rule on one target of one system, in one sweep (immutable, cheap to make)."""

    rule: Rule
    system_id: str
    target: str
    present: bool  # True: the problem was seen; False: checked and not seen
    evidence: dict[str, Any] = {}  # noqa: RUF012 -- never mutated; absent verdicts share it


class Entry(NamedTuple):
    """A rule ready to run: the compiled condition and evidence fields, read once from the model."""

    rule: Rule
    test: Compiled
    evidence_fields: tuple[str, ...]
    stateful: bool
    gate_only: bool  # stateful only through `for`/`clear_after` (no feature, no flapping)
    lazy_state: bool  # no feature: keeps no memory of a target until its condition first holds


_NUMBER_OPS = ("gt", "ge", "lt", "le")
_SKIP_GUARD_FIELDS = {"status", "kind", "probe", "system_id"}  # rarely selective


def guard_leaf(cond: Condition | None) -> Condition | None:
    """A leaf that must be true for the whole condition to be true (the condition itself, or a direct
    child of a top-level `all`), picked for selectivity: numeric thresholds, then equality."""
    if cond is None:
        return None
    leaves = [cond] if cond.field is not None else [c for c in (cond.all_ or []) if c.field is not None]

    def rank(c: Condition) -> int:
        number = isinstance(c.value, int | float) and not isinstance(c.value, bool)
        if c.op in _NUMBER_OPS and number:
            return 3
        if c.op == "eq" and isinstance(c.value, str | int | float | bool):
            return 1 if c.field in _SKIP_GUARD_FIELDS else 2
        return 0

    best = max(leaves, key=rank, default=None)
    return best if best is not None and rank(best) > 0 else None


class KindIndex:
    """The applicable rules of one kind for one kind of system, split by how they can be skipped.

    Used only when no finding is open on the observation's target: then a rule whose guard leaf is
    definitely false cannot produce anything the tracker needs (no finding to open, none to clear)."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.always: list[Entry] = []
        self.eq: dict[str, dict[Any, list[Entry]]] = defaultdict(lambda: defaultdict(list))
        ordered: dict[tuple[str, str], list[tuple[float, Entry]]] = defaultdict(list)
        for entry in entries:
            # `for`-only rules are guarded too: the engine uses this index only for targets that have no
            # hysteresis state, where a false guard means "nothing to count".
            indexable = not entry.stateful or entry.gate_only
            leaf = guard_leaf(entry.rule.condition) if indexable else None
            if leaf is None or leaf.field is None:
                self.always.append(entry)
            elif leaf.op == "eq":
                self.eq[leaf.field][leaf.value].append(entry)
            else:
                ordered[(leaf.field, str(leaf.op))].append((float(leaf.value), entry))
        self.ordered: list[tuple[str, str, list[float], list[Entry]]] = []
        for (name, op), items in ordered.items():
            items.sort(key=lambda item: item[0])
            self.ordered.append((name, op, [t for t, _ in items], [e for _, e in items]))
        self.eq_all = {name: [e for group in groups.values() for e in group] for name, groups in self.eq.items()}

    def candidates(self, get: Getter) -> list[Entry]:
        """Rules whose guard is true or unknown for this observation (plus those without a guard)."""
        out = list(self.always)
        for name, groups in self.eq.items():
            x = get(name)
            if x is None:
                out.extend(self.eq_all[name])
                continue
            try:
                out.extend(groups.get(x, ()))
            except TypeError:  # unhashable observed value
                out.extend(self.eq_all[name])
        for name, op, thresholds, ordered in self.ordered:
            x = get(name)
            if x is None:
                out.extend(ordered)
                continue
            cls = x.__class__
            if cls is not float and cls is not int:
                continue  # the guard is unknown: nothing can be present
            if op == "gt":
                out.extend(ordered[: bisect_left(thresholds, x)])
            elif op == "ge":
                out.extend(ordered[: bisect_right(thresholds, x)])
            elif op == "lt":
                out.extend(ordered[bisect_right(thresholds, x) :])
            else:
                out.extend(ordered[bisect_left(thresholds, x) :])
        return out


def field_view(obs: Observation) -> dict[str, Any]:
    """The observation flattened into one mapping, as rules read it (attributes win over data keys)."""
    view = dict(obs.data)
    view["status"] = obs.status.value
    view["error"] = obs.error
    view["kind"] = obs.kind
    view["target"] = obs.target
    view["probe"] = obs.probe
    view["system_id"] = obs.system_id
    return view


def evidence(entry: Entry, get: Getter, obs: Observation) -> dict[str, Any]:
    ev: dict[str, Any] = {"observed_at": obs.observed_at.isoformat(), "probe": obs.probe}
    for name in entry.evidence_fields:
        value = get(name)
        if value is not None:
            ev[name] = value
    return ev


class RuleSet:
    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = [r for r in rules if r.enabled]
        self._by_kind: dict[str, list[Rule]] = defaultdict(list)
        self._entries: dict[str, list[Entry]] = defaultdict(list)
        for rule in self.rules:
            gate_only = (
                rule.stateful
                and rule.flapping is None
                and not any(getattr(rule, k) is not None for k in ("change", "baseline", "window", "absence"))
            )
            featureless = not any(getattr(rule, k) is not None for k in ("change", "baseline", "window", "absence"))
            entry = Entry(
                rule, rule.compiled, rule.evidence_fields, rule.stateful, gate_only, rule.stateful and featureless
            )
            for kind in rule.observation:
                self._by_kind[kind].append(rule)
                self._entries[kind].append(entry)
        self._applicable: dict[tuple[str, str], list[Entry]] = {}
        self._indexes: dict[tuple[str, str], KindIndex] = {}
        self._shared: dict[tuple[str, ...], KindIndex] = {}
        self._registry: Registry | None = None

    def __len__(self) -> int:
        return len(self.rules)

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
            self._indexes.clear()
            self._registry = registry
        key = (kind, system.id)
        found = self._applicable.get(key)
        if found is None:
            found = [e for e in self._entries.get(kind, ()) if e.rule.applies_to.matches(system)]
            self._applicable[key] = found
        return found

    def index(self, kind: str, system: System, registry: Registry) -> KindIndex:
        """The skip index of the rules reading `kind` that apply to `system` (shared by equal rule sets)."""
        entries = self.applicable(kind, system, registry)
        key = (kind, system.id)
        found = self._indexes.get(key)
        if found is None:
            signature = (kind, *(e.rule.id for e in entries))
            found = self._shared.get(signature)
            if found is None:
                found = self._shared[signature] = KindIndex(entries)
            self._indexes[key] = found
        return found

    def evaluate(self, observations: Iterable[Observation], registry: Registry) -> list[Verdict]:
        """Definite verdicts of the stateless rules only (rules with memory need `AnomalyEngine`).

        An unknown outcome (field not observed) yields nothing."""
        verdicts: list[Verdict] = []
        append = verdicts.append
        entries = self._entries
        system_of = dict(registry.by_id).get
        for obs in observations:
            if obs.kind not in entries:
                continue
            system = system_of(obs.system_id)
            if system is None:
                continue
            get = field_view(obs).get
            sid, target = obs.system_id, obs.target
            for entry in self.applicable(obs.kind, system, registry):
                if entry.stateful:
                    continue
                outcome = entry.test(get)
                if outcome is True:
                    append(Verdict(entry.rule, sid, target, True, evidence(entry, get, obs)))
                elif outcome is False:
                    append(Verdict(entry.rule, sid, target, False))
        return verdicts
