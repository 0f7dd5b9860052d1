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

Only evidence clears: a rule's `when` that is not true, a feature still learning or missing its field, and
an error observation (for a false outcome) all give *unknown*. Unknown leaves memory and findings as they
are; for targets with an active finding it is reported as a `present=None` verdict so the tracker can show
the finding as stale. A change or baseline never relearns away a problem it is reporting (`active`): an
operator accepts the new value instead (`FindingTracker.act(..., ACCEPT_BASELINE)`).

`absence` rules are different: observations only refresh "last seen"; `tick(now)` reports the keys whose
last observation is older than `absence.after`. The clock is whatever `now` the caller passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple

from sentinel.engine.features import Differ, count_window, derive_baseline, derive_change, load_differ
from sentinel.engine.rule import Rule
from sentinel.engine.ruleset import Entry, KindIndex, RuleSet, Verdict, evidence, field_view
from sentinel.engine.state import MemoryState, State, StateBackend, StateKey
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import Registry, System

FLAPPING_SUFFIX = "_flapping"
GROUP_TARGET = "*"
NO_EVIDENCE: dict[str, Any] = Verdict._field_defaults["evidence"]  # the one shared by absent verdicts
_OK = ObservationStatus.OK
_new_verdict = tuple.__new__  # builds a Verdict without the named tuple's Python-level __new__ (hot path)


class Plan(NamedTuple):
    """What one kind of observation from one system goes through, worked out once per engine."""

    system: System
    entries: list[Entry]  # the rules of that kind that apply to the system
    skip: KindIndex  # the same, for skipping on targets with nothing open


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


def _shown_target(rule: Rule, target: str) -> str:
    """The target an absence verdict names: the target itself, or the group (`district:http,tls`)."""
    assert rule.absence is not None
    return target if target != GROUP_TARGET else f"{rule.absence.scope}:{','.join(rule.observation)}"


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
        self._dirty: dict[StateKey, State] = {}  # the state touched this sweep, saved at the tick
        self._pending: list[Verdict] = []
        #: (system_id, target) pairs with an open or acknowledged finding. When set, stateless rules emit
        #: "absent" verdicts only for these (elsewhere there is nothing to clear), which lets the engine
        #: skip rules whose guard is false. None: every definite verdict is emitted.
        self.active_targets: set[tuple[str, str]] | None = None
        self._flap = {r.id: flapping_rule(r) for r in rules.rules if r.flapping is not None}
        self._absence = {r.id: r for r in rules.rules if r.absence is not None}
        self._absence_keys: dict[StateKey, None] = {}  # the state keys of absence rules, in state order
        self._plans: dict[str, dict[str, Plan]] = {kind: {} for kind in rules.kinds}  # kind → system id → plan
        # Absent verdicts, reused from one sweep to the next (immutable): a sweep of targets with open
        # findings then allocates almost nothing that outlives it, which keeps the garbage collector's
        # full passes rare. Per (system, target), by rule number; only the targets of the last sweep.
        self._absent: dict[tuple[str, str], dict[int, Verdict]] = {}
        self._absent_before: dict[tuple[str, str], dict[int, Verdict]] = {}
        self._absence_absent: dict[StateKey, Verdict] = {}
        self._stamp_at: datetime | None = None  # the last observation time turned into text, and the text
        self._stamp = ""

    # -- state --------------------------------------------------------------------------------
    @property
    def state(self) -> dict[StateKey, State]:
        if self._state is None:
            self._state = self.backend.load()
            gate_only = {e.rule.id for kind in self.rules.kinds for e in self.rules.entries(kind) if e.gate_only}
            self._gated = {(s, t) for (r, s, t) in self._state if r in gate_only}
            self._absence_keys = dict.fromkeys(k for k in self._state if k[0] in self._absence)
        return self._state

    def _slot(self, key: StateKey) -> State:
        state = self._state if self._state is not None else self.state
        st = state.get(key)
        if st is None:
            st = state[key] = {}
        self._dirty[key] = st
        return st

    # -- observe / tick -----------------------------------------------------------------------
    def observe(self, obs: Observation) -> None:
        plans = self._plans.get(obs.kind)
        if plans is None:
            return  # no rule reads this kind
        sid = obs.system_id
        plan = plans.get(sid)
        if plan is None:
            system = self._systems.get(sid)
            if system is None:
                return
            plan = plans[sid] = self._plan(obs.kind, system)
        if not plan.entries:
            return
        target = obs.target
        pair = (sid, target)
        active = self.active_targets
        tracked = active is not None and pair in active  # a finding is active here: report unknowns too
        want_absent = active is None or tracked
        ok = obs.status is _OK  # an error observation can show a problem, never its absence
        emit = self._pending.append
        if not want_absent and pair not in self._gated:
            # Nothing is open on this target and no hysteresis is counting on it, so only "present"
            # outcomes (and rules with other memory) matter: skip every rule whose guard is not true.
            found = plan.skip.candidates(obs)
            if not found:
                return
            view = field_view(obs)
            get = view.get
            for entry in found:
                if entry.stateful:
                    self._stateful_entry(entry, obs, view, plan.system, False, False)
                elif entry.test(get) is True:
                    found_ev = evidence(entry, get, obs, self._stamp_of(obs.observed_at))
                    emit(_new_verdict(Verdict, (entry.rule, sid, target, True, found_ev)))
            return
        view = field_view(obs)
        get = view.get
        absent = self._absent_cache(pair) if want_absent else None
        for entry in plan.entries:
            if entry.stateful:
                self._stateful_entry(entry, obs, view, plan.system, want_absent, tracked)
                continue
            outcome = entry.test(get)
            if outcome is True:
                found_ev = evidence(entry, get, obs, self._stamp_of(obs.observed_at))
                emit(_new_verdict(Verdict, (entry.rule, sid, target, True, found_ev)))
            elif outcome is False and ok:
                if absent is not None:
                    verdict = absent.get(entry.number)
                    if verdict is None:
                        verdict = _new_verdict(Verdict, (entry.rule, sid, target, False, NO_EVIDENCE))
                        absent[entry.number] = verdict
                    emit(verdict)
            elif tracked:
                emit(self._unknown_verdict(entry.number, entry.rule, sid, target))

    def _absent_cache(self, pair: tuple[str, str]) -> dict[int, Verdict]:
        cache = self._absent.get(pair)
        if cache is None:
            cache = self._absent_before.pop(pair, None)
            if cache is None:
                cache = {}
            self._absent[pair] = cache
        return cache

    def _plan(self, kind: str, system: System) -> Plan:
        # Loaded before the first skip decision: `_gated` comes with the state.
        self.state  # noqa: B018
        entries = self.rules.applicable(kind, system, self.registry)
        return Plan(system, entries, self.rules.index(kind, system, self.registry))

    def _stamp_of(self, at: datetime) -> str:
        """`at.isoformat()`, remembered for the last `at` (observations of one batch share their time)."""
        if at is not self._stamp_at:
            self._stamp_at, self._stamp = at, at.isoformat()
        return self._stamp

    def _stateful_entry(
        self, entry: Entry, obs: Observation, view: dict[str, Any], system: System, want_absent: bool, tracked: bool
    ) -> None:
        if entry.rule.absence is not None:
            self._seen(entry.rule, obs, system)
        else:
            self._stateful(entry, obs, view, want_absent, tracked)

    def tick(self, now: datetime) -> list[Verdict]:
        """Close one sweep: absence checks, persist the touched state, hand over this sweep's verdicts."""
        self._check_absence(now)
        if self._dirty:
            self.backend.save(self._dirty, now)
            self._dirty = {}
        self._absent_before, self._absent = self._absent, {}
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
    def _stateful(self, entry: Entry, obs: Observation, view: dict[str, Any], want_absent: bool, tracked: bool) -> None:
        rule = entry.rule
        if entry.guard is not None and entry.guard(view.get) is not True:
            # The precondition does not hold: this observation says nothing about the rule, so it feeds
            # no memory (no learning, no counters, no window sample) and resolves nothing.
            self._unknown(entry, obs, tracked)
            return
        key = (rule.id, obs.system_id, obs.target)
        ok = obs.status is _OK
        if entry.lazy_state and key not in (self._state if self._state is not None else self.state):
            # A `for`/`clear_after`/`flapping` rule keeps no memory of a target until its condition first
            # holds: before that, every counter and the flip history would say "never seen".
            raw = entry.test(view.get)
            if raw is False and not ok:
                raw = None
            if raw is None:
                self._unknown(entry, obs, tracked)
                return
            if raw is not True:
                if want_absent:
                    self._pending.append(self._absent_verdict(entry.number, rule, obs.system_id, obs.target))
                    if rule.flapping is not None:
                        companion = self._flap[rule.id]
                        flap = self._absent_verdict(-1 - entry.number, companion, obs.system_id, obs.target)
                        self._pending.append(flap)
                return
            if entry.gate_only:
                self._gated.add((obs.system_id, obs.target))
        st = self._slot(key)
        derived: dict[str, Any] = {}
        get: Callable[[str], Any] = view.get
        # While it reports a problem, a feature keeps its learned value: relearning would make the problem
        # "disappear" without any evidence that it is gone.
        hold = bool(st.get("active", False))
        if rule.change is not None or rule.baseline is not None:
            if rule.change is not None:
                derived = derive_change(rule.change, st.setdefault("chg", {}), get, obs.observed_at, self.differ, hold)
                learning = derived.get("change.learning")
            else:
                assert rule.baseline is not None
                derived = derive_baseline(rule.baseline, st.setdefault("bl", {}), get, hold)
                learning = derived.get("baseline.learning")
            if learning is not False:  # the field is missing, or the feature is still learning: cannot tell
                self._unknown(entry, obs, tracked)
                return
            get = _overlay(derived, view.get)
        raw = entry.test(get)
        if raw is False and not ok:
            raw = None
        if rule.window is not None:
            if raw is None:
                self._unknown(entry, obs, tracked)
                return
            raw, window_fields = count_window(rule.window, st.setdefault("win", {}), raw, obs.observed_at)
            derived.update(window_fields)
            get = _overlay(derived, view.get)
        if raw is None:
            self._unknown(entry, obs, tracked)
            return
        if rule.flapping is not None:
            self._track_flapping(rule, obs, st, raw)
        decision = self._gate(rule, st, raw)
        if decision is None:
            return
        if decision:
            found = evidence(entry, get, obs, self._stamp_of(obs.observed_at))
            found.update({k: v for k, v in derived.items() if v is not None})
            self._pending.append(Verdict(rule, obs.system_id, obs.target, True, found))
        elif want_absent:
            self._pending.append(self._absent_verdict(entry.number, rule, obs.system_id, obs.target))

    def _unknown(self, entry: Entry, obs: Observation, tracked: bool) -> None:
        """Observed, but the rule cannot tell: said only where a finding is active (to mark it stale)."""
        if tracked:
            self._pending.append(self._unknown_verdict(entry.number, entry.rule, obs.system_id, obs.target))

    def _unknown_verdict(self, number: int, rule: Rule, system_id: str, target: str) -> Verdict:
        cache = self._absent_cache((system_id, target))
        key = ~number - (1 << 30)  # apart from the absent verdicts (>= 0) and the flapping ones (-1 - number)
        verdict = cache.get(key)
        if verdict is None:
            verdict = cache[key] = _new_verdict(Verdict, (rule, system_id, target, None, NO_EVIDENCE))
        return verdict

    def _absent_verdict(self, number: int, rule: Rule, system_id: str, target: str) -> Verdict:
        """The (reused) absent verdict of the rule numbered `number` (negative: its flapping companion)."""
        cache = self._absent_cache((system_id, target))
        verdict = cache.get(number)
        if verdict is None:
            verdict = cache[number] = _new_verdict(Verdict, (rule, system_id, target, False, NO_EVIDENCE))
        return verdict

    @staticmethod
    def _gate(rule: Rule, st: State, raw: bool) -> bool | None:
        """`for` / `clear_after` hysteresis: True opens/keeps, False clears, None says nothing."""
        if rule.for_ == 1 and rule.clear_after == 1:
            st["active"] = raw  # what the finding is (features read it to hold their learned value)
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
        state = self.state
        for key, at in self._arrived.items():
            if key not in state:
                self._absence_keys[key] = None
            st = self._slot(key)
            stamp = self._stamp_of(at)
            if str(st.get("last", "")) < stamp:
                st["last"] = stamp
        self._arrived.clear()
        for key in self._absence_keys:
            st = state[key]
            rule_id, system_id, target = key
            rule = self._absence[rule_id]
            if rule.absence is None or "last" not in st:
                continue
            per_system = target != GROUP_TARGET or rule.absence.scope == "system"
            if per_system and system_id not in self._systems:
                continue  # retired system: nothing is expected from it any more
            last = datetime.fromisoformat(str(st["last"]))
            silent = now - last
            if silent > rule.absence.after:
                found = {
                    "last_seen": last.isoformat(),
                    "silent_for_s": int(silent.total_seconds()),
                    "expected_within_s": int(rule.absence.after.total_seconds()),
                    "kinds": list(rule.observation),
                }
                self._pending.append(Verdict(rule, system_id, _shown_target(rule, target), True, found))
                continue
            verdict = self._absence_absent.get(key)
            if verdict is None:
                verdict = Verdict(rule, system_id, _shown_target(rule, target), False, {})
                self._absence_absent[key] = verdict
            self._pending.append(verdict)
