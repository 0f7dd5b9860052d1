"""The stateful rule engine: `observe(obs)` for each observation, then `tick(now)` once per sweep.

Stateless rules are evaluated as they are (one verdict per observation). Rules with memory keep a small
JSON state per (rule, system, target) in a `StateBackend` (the store in production, so a restart keeps
baselines and counters) and go through, in this order:

1. a feature that derives fields from history (`change`, `baseline`) or replaces the condition's
   meaning with a ratio over days (`window`);
2. flapping detection on the raw outcome (a separate `<rule>_flapping` finding);
3. the `for` / `clear_after` gate: the problem opens after N consecutive positive evaluations and
   clears after M consecutive negative ones; in between, the engine says nothing, so the tracker keeps
   the finding as it is. Unknown outcomes leave every counter as it was.

`absence` rules are different: observations only refresh "last seen"; `tick(now)` reports the keys whose
last observation is older than `absence.after`. The clock is whatever `now` the caller passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sentinel.engine.features import Differ, count_window, derive_baseline, derive_change, load_differ
from sentinel.engine.rule import Rule
from sentinel.engine.ruleset import Entry, RuleSet, Verdict, evidence, field_view
from sentinel.engine.state import MemoryState, State, StateBackend, StateKey
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import Registry, System

FLAPPING_SUFFIX = "_flapping"
GROUP_TARGET = "*"


def flapping_rule(rule: Rule) -> Rule:
    """The companion rule whose findings say "this target keeps flipping" for `rule`."""
    assert rule.flapping is not None
    spec = rule.flapping
    return Rule.model_validate(
        {
            "id": rule.id + FLAPPING_SUFFIX,
            "title": f"Flapping: {rule.title}",
            "description": f"The outcome of rule {rule.id} changed at least {spec.changes} times in its last "
            f"{spec.within} evaluations.",
            "severity": rule.severity,
            "category": rule.category,
            "observation": list(rule.observation),
            "applies_to": rule.applies_to.model_dump(exclude_none=True),
            "condition": {"field": "flapping", "op": "eq", "value": True},
            "controls": rule.controls.model_dump(),
            "remediation": "Find the intermittent cause (overload, failing node behind a balancer, unstable link) "
            f"rather than the symptom. Original advice: {rule.remediation}",
        }
    )


def _overlay(derived: dict[str, Any], base: Callable[[str], Any]) -> Callable[[str], Any]:
    """Derived fields (`change.*`, `baseline.*`, `window.*`) over the observation's own."""
    return lambda name: derived[name] if name in derived else base(name)


def _group_key(rule: Rule, obs: Observation, system: System) -> tuple[str, str] | None:
    assert rule.absence is not None
    match rule.absence.scope:
        case "target":
            return obs.system_id, obs.target
        case "system":
            return obs.system_id, GROUP_TARGET
        case "district":
            return (f"district:{system.district}", GROUP_TARGET) if system.district else None
        case _:
            return f"tier:{system.tier.value}", GROUP_TARGET


class AnomalyEngine:
    def __init__(
        self,
        rules: RuleSet,
        registry: Registry,
        state: StateBackend | None = None,
        differ: Differ | None = None,
    ) -> None:
        self.rules = rules
        self.registry = registry
        self._systems = dict(registry.by_id)  # a plain dict: the model's cached property is slow per lookup
        self.backend: StateBackend = state if state is not None else MemoryState()
        self.differ = differ or load_differ()
        self._state: dict[StateKey, State] | None = None
        self._gated: set[tuple[str, str]] = set()  # targets with `for`/`clear_after` counters
        self._arrived: dict[StateKey, datetime] = {}  # absence rules: latest arrival this sweep
        self._dirty: set[StateKey] = set()
        self._pending: list[Verdict] = []
        #: (system_id, target) pairs with an open or acknowledged finding. When set, stateless rules emit
        #: "absent" verdicts only for these (elsewhere there is nothing to clear), which lets the engine
        #: skip rules whose guard is false. None: every definite verdict is emitted.
        self.active_targets: set[tuple[str, str]] | None = None
        self._flap = {r.id: flapping_rule(r) for r in rules.rules if r.flapping is not None}
        self._absence = {r.id: r for r in rules.rules if r.absence is not None}

    # -- state --------------------------------------------------------------------------------
    @property
    def state(self) -> dict[StateKey, State]:
        if self._state is None:
            self._state = self.backend.load()
            gate_only = {e.rule.id for kind in self.rules.kinds for e in self.rules.entries(kind) if e.gate_only}
            self._gated = {(s, t) for (r, s, t) in self._state if r in gate_only}
        return self._state

    def _slot(self, key: StateKey) -> State:
        self._dirty.add(key)
        state = self._state if self._state is not None else self.state
        st = state.get(key)
        if st is None:
            st = state[key] = {}
        return st

    # -- observe / tick -----------------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        system = self._systems.get(obs.system_id)
        if system is None:
            return
        sid, target = obs.system_id, obs.target
        pair = (sid, target)
        want_absent = self.active_targets is None or pair in self.active_targets
        if not want_absent and pair not in self._gated:
            # Nothing is open on this target and no hysteresis is counting on it, so only "present"
            # outcomes (and rules with other memory) matter: skip every rule whose guard is false.
            index = self.rules.index(obs.kind, system, self.registry)
            if not index.entries:
                return
            view = field_view(obs)
            get = view.get
            for entry in index.candidates(get):
                if entry.stateful:
                    self._stateful_entry(entry, obs, view, system)
                elif entry.test(get) is True:
                    self._pending.append(Verdict(entry.rule, sid, target, True, evidence(entry, get, obs)))
            return
        entries = self.rules.applicable(obs.kind, system, self.registry)
        if not entries:
            return
        view = field_view(obs)
        get = view.get
        emit = self._pending.append
        for entry in entries:
            if not entry.stateful:
                outcome = entry.test(get)
                if outcome is True:
                    emit(Verdict(entry.rule, sid, target, True, evidence(entry, get, obs)))
                elif outcome is False and want_absent:
                    emit(Verdict(entry.rule, sid, target, False))
            else:
                self._stateful_entry(entry, obs, view, system)

    def _stateful_entry(self, entry: Entry, obs: Observation, view: dict[str, Any], system: System) -> None:
        if entry.rule.absence is not None:
            self._seen(entry.rule, obs, system)
        else:
            self._stateful(entry, obs, view)

    def tick(self, now: datetime) -> list[Verdict]:
        """Close one sweep: absence checks, persist the touched state, hand over this sweep's verdicts."""
        self._check_absence(now)
        if self._dirty:
            self.backend.save({k: self.state[k] for k in self._dirty if k in self.state}, now)
            self._dirty.clear()
        verdicts, self._pending = self._pending, []
        return verdicts

    def evaluate(
        self,
        observations: Iterable[Observation],
        now: datetime,
        active_targets: set[tuple[str, str]] | None = None,
    ) -> list[Verdict]:
        """One sweep: observe each observation, then tick. `active_targets`: see the attribute."""
        self.active_targets = active_targets
        for obs in observations:
            self.observe(obs)
        return self.tick(now)

    # -- stateful rules -----------------------------------------------------------------------
    def _stateful(self, entry: Entry, obs: Observation, view: dict[str, Any]) -> None:
        rule = entry.rule
        key = (rule.id, obs.system_id, obs.target)
        if entry.lazy_state and key not in (self._state if self._state is not None else self.state):
            # A `for`/`clear_after`/`flapping` rule keeps no memory of a target until its condition first
            # holds: before that, every counter and the flip history would say "never seen".
            raw = entry.test(view.get)
            if raw is not True:
                if raw is False and self._wants_absent(obs):
                    self._pending.append(Verdict(rule, obs.system_id, obs.target, False))
                    if rule.flapping is not None:
                        self._pending.append(Verdict(self._flap[rule.id], obs.system_id, obs.target, False))
                return
            if entry.gate_only:
                self._gated.add((obs.system_id, obs.target))
        st = self._slot(key)
        derived: dict[str, Any] = {}
        get: Callable[[str], Any] = view.get
        if rule.change is not None:
            derived = derive_change(rule.change, st.setdefault("chg", {}), get, obs.observed_at, self.differ)
        elif rule.baseline is not None:
            derived = derive_baseline(rule.baseline, st.setdefault("bl", {}), get)
        if derived:
            get = _overlay(derived, view.get)
        raw = entry.test(get)
        if rule.window is not None:
            if raw is None:
                return
            raw, window_fields = count_window(rule.window, st.setdefault("win", {}), raw, obs.observed_at)
            derived.update(window_fields)
            get = _overlay(derived, view.get)
        if raw is None:
            return
        if rule.flapping is not None:
            self._track_flapping(rule, obs, st, raw)
        decision = self._gate(rule, st, raw)
        if decision is None:
            return
        if decision:
            found = evidence(entry, get, obs)
            found.update({k: v for k, v in derived.items() if v is not None})
            self._pending.append(Verdict(rule, obs.system_id, obs.target, True, found))
        elif self._wants_absent(obs):
            self._pending.append(Verdict(rule, obs.system_id, obs.target, False))

    def _wants_absent(self, obs: Observation) -> bool:
        return self.active_targets is None or (obs.system_id, obs.target) in self.active_targets

    @staticmethod
    def _gate(rule: Rule, st: State, raw: bool) -> bool | None:
        """`for` / `clear_after` hysteresis: True opens/keeps, False clears, None says nothing."""
        if rule.for_ == 1 and rule.clear_after == 1:
            return raw
        active = bool(st.get("active", False))
        if raw:
            st["pos"], st["neg"] = int(st.get("pos", 0)) + 1, 0
            if active or st["pos"] >= rule.for_:
                st["active"] = True
                return True
            return None  # pending: not yet held for long enough
        st["pos"], st["neg"] = 0, int(st.get("neg", 0)) + 1
        if active and st["neg"] < rule.clear_after:
            return None  # holding: not yet clear for long enough
        st["active"] = False
        return False

    def _track_flapping(self, rule: Rule, obs: Observation, st: State, raw: bool) -> None:
        assert rule.flapping is not None
        spec = rule.flapping
        history = (str(st.get("hist", "")) + ("1" if raw else "0"))[-spec.within :]
        st["hist"] = history
        changes = sum(1 for a, b in itertools.pairwise(history) if a != b)
        flapping = changes >= spec.changes
        if not flapping and len(history) < spec.within:
            return  # not enough history to say it is stable
        evidence = {"observed_at": obs.observed_at.isoformat(), "changes": changes, "within": len(history)}
        flap_rule = self._flap[rule.id]
        self._pending.append(Verdict(flap_rule, obs.system_id, obs.target, flapping, evidence if flapping else {}))

    # -- absence ------------------------------------------------------------------------------
    def _seen(self, rule: Rule, obs: Observation, system: System) -> None:
        assert rule.absence is not None
        if rule.absence.require_ok and obs.status != ObservationStatus.OK:
            return
        group = _group_key(rule, obs, system)
        if group is None:
            return
        key = (rule.id, *group)
        seen = self._arrived.get(key)
        if seen is None or seen < obs.observed_at:
            self._arrived[key] = obs.observed_at  # merged into the state once per tick

    def _check_absence(self, now: datetime) -> None:
        for key, at in self._arrived.items():
            st = self._slot(key)
            stamp = at.isoformat()
            if str(st.get("last", "")) < stamp:
                st["last"] = stamp
        self._arrived.clear()
        for (rule_id, system_id, target), st in self.state.items():
            rule = self._absence.get(rule_id)
            if rule is None or rule.absence is None or "last" not in st:
                continue
            per_system = target != GROUP_TARGET or rule.absence.scope == "system"
            if per_system and system_id not in self._systems:
                continue  # retired system: nothing is expected from it any more
            last = datetime.fromisoformat(str(st["last"]))
            silent = now - last
            present = silent > rule.absence.after
            evidence = (
                {
                    "last_seen": last.isoformat(),
                    "silent_for_s": int(silent.total_seconds()),
                    "expected_within_s": int(rule.absence.after.total_seconds()),
                    "kinds": list(rule.observation),
                }
                if present
                else {}
            )
            shown = target if target != GROUP_TARGET else f"{rule.absence.scope}:{','.join(rule.observation)}"
            self._pending.append(Verdict(rule, system_id, shown, present, evidence))
