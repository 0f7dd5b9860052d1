"""Rules indexed by what they read, and one-shot evaluation of observations against them.

The index is two-level: observation kind → rules that read it, and (kind, system) → the rules of that
kind that apply to that system (tier, level, CII, tags), computed once per set of alike systems. Evaluating
an observation is then one closure call per candidate rule over a flattened field view.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple

from sentinel.engine.conditions import Compiled, Condition, Getter
from sentinel.engine.rule import AppliesTo, Rule
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import Registry, System


class Verdict(NamedTuple):
    """The outcome of one rule on one target of one system, in one sweep (immutable, cheap to make)."""

    rule: Rule
    system_id: str
    target: str
    present: bool | None  # True: the problem was seen; False: checked and not seen; None: observed, could not tell
    evidence: dict[str, Any] = {}  # noqa: RUF012 -- never mutated; absent verdicts share it


class Entry(NamedTuple):
    """A rule ready to run: the compiled condition and evidence fields, read once from the model."""

    rule: Rule
    test: Compiled
    evidence_fields: tuple[str, ...]
    stateful: bool
    gate_only: bool  # stateful only through `for`/`clear_after` (no feature, no flapping)
    lazy_state: bool  # no feature: keeps no memory of a target until its condition first holds
    number: int  # the rule's position in its RuleSet (a cheap key that stays unique if two ids clash)
    guard: Compiled | None  # the rule's `when` alone (stateful rules check it before touching their memory)


_NUMBER_OPS = ("gt", "ge", "lt", "le")
_SKIP_GUARD_FIELDS = {"status", "kind", "probe", "system_id"}  # rarely selective


def _necessary_leaves(cond: Condition | None) -> list[Condition]:
    if cond is None:
        return []
    return [cond] if cond.field is not None else [c for c in (cond.all_ or []) if c.field is not None]


def guard_leaf(cond: Condition | None, when: Condition | None = None) -> Condition | None:
    """A leaf that must be true for the whole condition to be true (the condition itself, or a direct
    child of a top-level `all`, of the condition or of the rule's `when`), picked for selectivity:
    numeric thresholds, then equality."""
    leaves = _necessary_leaves(when) + _necessary_leaves(cond)

    def rank(c: Condition) -> int:
        number = isinstance(c.value, int | float) and not isinstance(c.value, bool)
        if c.op in _NUMBER_OPS and number:
            return 3
        if c.op == "eq" and isinstance(c.value, str | int | float | bool):
            return 1 if c.field in _SKIP_GUARD_FIELDS else 2
        return 0

    best = max(leaves, key=rank, default=None)
    return best if best is not None and rank(best) > 0 else None


# The observation's own attributes, which win over data keys of the same name (see `field_view`).
ATTRIBUTE_FIELDS = frozenset({"status", "error", "kind", "target", "probe", "system_id"})


class KindIndex:
    """The applicable rules of one kind for one kind of system, split by how they can be skipped.

    Used only when no finding is open on the observation's target: then a rule whose guard leaf is not
    definitely true cannot produce anything the tracker needs (no finding to open, none to clear): a
    false guard makes the condition false, an unknown one makes it at best unknown."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.always: list[Entry] = []
        eq: dict[str, dict[Any, list[Entry]]] = defaultdict(lambda: defaultdict(list))
        ordered: dict[tuple[str, str], list[tuple[float, Entry]]] = defaultdict(list)
        for entry in entries:
            # `for`-only rules are guarded too: the engine uses this index only for targets that have no
            # hysteresis state, where a guard that is not true means "nothing to count".
            indexable = not entry.stateful or entry.gate_only
            leaf = guard_leaf(entry.rule.condition, entry.rule.when) if indexable else None
            if leaf is None or leaf.field is None:
                self.always.append(entry)
            elif leaf.op == "eq":
                eq[leaf.field][leaf.value].append(entry)
            else:
                ordered[(leaf.field, str(leaf.op))].append((float(leaf.value), entry))
        #: (field, is an attribute, guard value → rules, every rule guarded on the field)
        self.eq: list[tuple[str, bool, dict[Any, list[Entry]], list[Entry]]] = [
            (name, name in ATTRIBUTE_FIELDS, dict(groups), [e for group in groups.values() for e in group])
            for name, groups in eq.items()
        ]
        #: (field, is an attribute, op, sorted thresholds, their rules)
        self.ordered: list[tuple[str, bool, str, list[float], list[Entry]]] = []
        for (name, op), items in ordered.items():
            items.sort(key=lambda item: item[0])
            self.ordered.append((name, name in ATTRIBUTE_FIELDS, op, [t for t, _ in items], [e for _, e in items]))

    def candidates(self, obs: Observation) -> list[Entry]:
        """Rules whose guard is true for this observation (plus those without a guard), in index order.

        Reads the guard fields straight from the observation, so a target with no candidate costs no
        field view."""
        out = self.always
        data = obs.data
        x: Any
        hit: list[Entry] | None
        for name, attribute, groups, every in self.eq:
            x = obs.get(name) if attribute else data.get(name)
            if x is None:
                continue  # the guard is unknown: the condition cannot be true
            try:
                hit = groups.get(x)
            except TypeError:  # unhashable observed value: let the condition decide
                hit = every
            if hit:
                out = out + hit
        for name, attribute, op, thresholds, rules in self.ordered:
            x = obs.get(name) if attribute else data.get(name)
            cls = x.__class__
            if cls is not float and cls is not int:
                continue  # missing, or not a number (bool included): the guard is unknown
            if op == "gt":
                hit = rules[: bisect_left(thresholds, x)]
            elif op == "ge":
                hit = rules[: bisect_right(thresholds, x)]
            elif op == "lt":
                hit = rules[bisect_right(thresholds, x) :]
            else:
                hit = rules[bisect_left(thresholds, x) :]
            if hit:
                out = out + hit
        return out


def field_view(obs: Observation) -> dict[str, Any]:
    """The observation flattened into one mapping, as rules read it (attributes win over data keys)."""
    view = dict(obs.data)
    view["status"] = obs.status._value_  # the plain value, without the enum's descriptor lookup
    view["error"] = obs.error
    view["kind"] = obs.kind
    view["target"] = obs.target
    view["probe"] = obs.probe
    view["system_id"] = obs.system_id
    return view


def evidence(entry: Entry, get: Getter, obs: Observation, stamp: str | None = None) -> dict[str, Any]:
    """What a present verdict shows: when, by which probe, and the fields the rule read.
    `stamp`: `obs.observed_at.isoformat()` when the caller already has it."""
    ev: dict[str, Any] = {"observed_at": stamp or obs.observed_at.isoformat(), "probe": obs.probe}
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
        for number, rule in enumerate(self.rules):
            gate_only = (
                rule.stateful
                and rule.flapping is None
                and not any(getattr(rule, k) is not None for k in ("change", "baseline", "window", "absence"))
            )
            featureless = not any(getattr(rule, k) is not None for k in ("change", "baseline", "window", "absence"))
            entry = Entry(
                rule,
                rule.compiled,
                rule.evidence_fields,
                rule.stateful,
                gate_only,
                rule.stateful and featureless,
                number,
                rule.guard,
            )
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

    def evaluate(self, observations: Iterable[Observation], registry: Registry) -> list[Verdict]:
        """Definite verdicts of the stateless rules only (rules with memory need `AnomalyEngine`).

        An unknown outcome (field not observed, precondition not met) yields nothing, and so does a false
        one on an error observation: a probe that could not observe never shows a problem gone."""
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
            ok = obs.status is ObservationStatus.OK
            for entry in self.applicable(obs.kind, system, registry):
                if entry.stateful:
                    continue
                outcome = entry.test(get)
                if outcome is True:
                    append(Verdict(entry.rule, sid, target, True, evidence(entry, get, obs)))
                elif outcome is False and ok:
                    append(Verdict(entry.rule, sid, target, False))
        return verdicts
