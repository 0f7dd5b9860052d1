"""Skipping rules that cannot matter: the guard-leaf index of the rules of one kind for one kind of system.

On a target with nothing open and no hysteresis counting, only "present" outcomes matter (there is no
finding to clear), so a rule whose guard leaf is not definitely true can be skipped: a false guard makes
the condition false, an unknown one makes it at best unknown. `KindIndex.candidates` finds the rest by
reading the guard fields straight from the observation (a dict lookup, a bisect over thresholds).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from typing import Any, NamedTuple

from sentinel.engine.conditions import Condition
from sentinel.engine.entry import ATTRIBUTE_FIELDS, Entry
from sentinel.models import Observation
from sentinel.registry.models import System

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


class Plan(NamedTuple):
    """What one kind of observation from one system goes through, worked out once per engine."""

    system: System
    entries: list[Entry]  # the rules of that kind that apply to the system
    skip: KindIndex  # the same, for skipping on targets with nothing open
