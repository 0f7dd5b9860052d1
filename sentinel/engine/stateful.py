"""Rules with memory: `for`/`clear_after` hysteresis, flapping, `change`, `baseline`, `window` and `absence`.

Each keeps a small JSON state per (rule, system, target) in a `StateBackend` (the store in production, so
a restart keeps baselines and counters). An observation goes through, in this order:

1. a feature that derives fields from history (`change`, `baseline`) or replaces the condition's
   meaning with a ratio over days (`window`);
2. flapping detection on the raw outcome (a separate `<rule>_flapping` finding);
3. the `for` / `clear_after` gate: the problem opens after N consecutive positive evaluations and
   clears after M consecutive negative ones; in between, the rule says nothing, so the tracker keeps
   the finding as it is. Unknown outcomes leave every counter as it was.

Only evidence clears: a rule's `when` that is not true, a feature still learning or missing its field, and
an error observation (for a false outcome) all give *unknown*. Unknown leaves memory and findings as they
are; for targets with an active finding it is reported as a `present=None` verdict so the tracker can show
the finding as stale. A change or baseline never relearns away a problem it is reporting (`active`): an
operator accepts the new value instead (`FindingTracker.act(..., ACCEPT_BASELINE)`).

`absence` rules are different: observations only refresh "last seen"; when a call finishes, the keys whose
last observation is older than `absence.after` are reported. The clock is whatever `now` the caller passes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sentinel.engine import evidence
from sentinel.engine.entry import Entry
from sentinel.engine.evaluation import Evaluation, Target
from sentinel.engine.features import Differ, count_window, derive_baseline, derive_change
from sentinel.engine.rule import Rule
from sentinel.engine.ruleset import RuleSet
from sentinel.engine.state import State, StateBackend, StateKey
from sentinel.engine.verdict import NO_EVIDENCE, Verdict
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import System

FLAPPING_SUFFIX = "_flapping"
GROUP_TARGET = "*"
_OK = ObservationStatus.OK


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


def gate(rule: Rule, st: State, raw: bool) -> bool | None:
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


def _overlay(derived: dict[str, Any], base: Callable[[str], Any]) -> Callable[[str], Any]:
    """Derived fields (`change.*`, `baseline.*`, `window.*`) over the observation's own."""
    return lambda name: derived[name] if name in derived else base(name)


def _shown_target(rule: Rule, target: str) -> str:
    """The target an absence verdict names: the target itself, or the group (`district:http,tls`)."""
    assert rule.absence is not None
    return target if target != GROUP_TARGET else f"{rule.absence.scope}:{','.join(rule.observation)}"


def _group_key(rule: Rule, obs: Observation, system: System) -> Target | None:
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


class RuleMemory:
    """What the rules with memory keep across calls: the per-key state (loaded once from the backend and
    saved at the end of each call), the targets with hysteresis counters, the absence keys, and the
    absence rules' absent verdicts (immutable, reused from call to call)."""

    def __init__(self, rules: RuleSet, systems: dict[str, System], backend: StateBackend, differ: Differ) -> None:
        self.backend = backend
        self.differ = differ
        self._systems = systems  # registered systems: an absence key of a retired one is not expected any more
        self.state: dict[StateKey, State] = {}
        self._loaded = False
        #: Targets with `for`/`clear_after` counters: a call may not skip their rules (a counter must hear "false").
        self.gated: set[Target] = set()
        self._gate_only = {e.rule.id for kind in rules.kinds for e in rules.entries(kind) if e.gate_only}
        self._flap = {r.id: flapping_rule(r) for r in rules.rules if r.flapping is not None}
        self._absence = {r.id: r for r in rules.rules if r.absence is not None}
        self._absence_keys: dict[StateKey, None] = {}  # the state keys of absence rules, in state order
        self._absence_absent: dict[StateKey, Verdict] = {}

    def load(self) -> dict[StateKey, State]:
        """The state, read from the backend on first use (before a call's first skip decision: `gated`)."""
        if not self._loaded:
            self.state = self.backend.load()
            self._loaded = True
            self.gated.update((s, t) for (r, s, t) in self.state if r in self._gate_only)
            self._absence_keys = dict.fromkeys(k for k in self.state if k[0] in self._absence)
        return self.state

    def _slot(self, call: Evaluation, key: StateKey) -> State:
        st = self.state.get(key)
        if st is None:
            st = self.state[key] = {}
        call.dirty[key] = st
        return st

    # -- one observation ----------------------------------------------------------------------
    def observe(
        self,
        call: Evaluation,
        entry: Entry,
        obs: Observation,
        view: dict[str, Any],
        system: System,
        want_absent: bool,
        tracked: bool,
    ) -> None:
        """Feed one observation to one rule with memory; its verdicts (if any) go to `call`."""
        rule = entry.rule
        if rule.absence is not None:
            self._seen(call, rule, obs, system)
            return
        if entry.guard is not None and entry.guard(view.get) is not True:
            # The precondition does not hold: this observation says nothing about the rule, so it feeds
            # no memory (no learning, no counters, no window sample) and resolves nothing.
            self._unknown(call, entry, obs, tracked)
            return
        key = (rule.id, obs.system_id, obs.target)
        ok = obs.status is _OK
        if entry.lazy_state and key not in self.state:
            # A `for`/`clear_after`/`flapping` rule keeps no memory of a target until its condition first
            # holds: before that, every counter and the flip history would say "never seen".
            raw = entry.test(view.get)
            if raw is False and not ok:
                raw = None
            if raw is None:
                self._unknown(call, entry, obs, tracked)
                return
            if raw is not True:
                if want_absent:
                    call.emit(call.absent_verdict(entry.number, rule, obs.system_id, obs.target))
                    if rule.flapping is not None:
                        companion = self._flap[rule.id]
                        call.emit(call.absent_verdict(-1 - entry.number, companion, obs.system_id, obs.target))
                return
            if entry.gate_only:
                self.gated.add((obs.system_id, obs.target))
        st = self._slot(call, key)
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
                self._unknown(call, entry, obs, tracked)
                return
            get = _overlay(derived, view.get)
        raw = entry.test(get)
        if raw is False and not ok:
            raw = None
        if rule.window is not None:
            if raw is None:
                self._unknown(call, entry, obs, tracked)
                return
            raw, window_fields = count_window(rule.window, st.setdefault("win", {}), raw, obs.observed_at)
            derived.update(window_fields)
            get = _overlay(derived, view.get)
        if raw is None:
            self._unknown(call, entry, obs, tracked)
            return
        if rule.flapping is not None:
            self._track_flapping(call, rule, obs, st, raw)
        decision = gate(rule, st, raw)
        if decision is None:
            return
        if decision:
            found = evidence.observed(entry.evidence_fields, get, obs, call.stamps.of(obs.observed_at), derived)
            call.emit(Verdict(rule, obs.system_id, obs.target, True, found))
        elif want_absent:
            call.emit(call.absent_verdict(entry.number, rule, obs.system_id, obs.target))

    @staticmethod
    def _unknown(call: Evaluation, entry: Entry, obs: Observation, tracked: bool) -> None:
        """Observed, but the rule cannot tell: said only where a finding is active (to mark it stale)."""
        if tracked:
            call.emit(call.unknown_verdict(entry.number, entry.rule, obs.system_id, obs.target))

    def _track_flapping(self, call: Evaluation, rule: Rule, obs: Observation, st: State, raw: bool) -> None:
        assert rule.flapping is not None
        spec = rule.flapping
        history = (str(st.get("hist", "")) + ("1" if raw else "0"))[-spec.within :]
        st["hist"] = history
        changes = sum(1 for a, b in itertools.pairwise(history) if a != b)
        flapping = changes >= spec.changes
        if not flapping and len(history) < spec.within:
            return  # not enough history to say it is stable
        shown = evidence.flapping(call.stamps.of(obs.observed_at), changes, len(history)) if flapping else NO_EVIDENCE
        call.emit(Verdict(self._flap[rule.id], obs.system_id, obs.target, flapping, shown))

    # -- absence ------------------------------------------------------------------------------
    def _seen(self, call: Evaluation, rule: Rule, obs: Observation, system: System) -> None:
        assert rule.absence is not None
        if rule.absence.require_ok and obs.status is not _OK:
            return
        group = _group_key(rule, obs, system)
        if group is None:
            return
        key = (rule.id, *group)
        seen = call.arrived.get(key)
        if seen is None or seen < obs.observed_at:
            call.arrived[key] = obs.observed_at  # merged into the state when the call finishes

    def finish(self, call: Evaluation, now: datetime) -> None:
        """End of a call: report silent absence keys to `call`, then save the state the call touched."""
        self._check_absence(call, now)
        if call.dirty:
            self.backend.save(call.dirty, now)

    def _check_absence(self, call: Evaluation, now: datetime) -> None:
        state = self.load()
        for key, at in call.arrived.items():
            if key not in state:
                self._absence_keys[key] = None
            st = self._slot(call, key)
            stamp = call.stamps.of(at)
            if str(st.get("last", "")) < stamp:
                st["last"] = stamp
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
                found = evidence.silence(last, silent, rule.absence.after, list(rule.observation))
                call.emit(Verdict(rule, system_id, _shown_target(rule, target), True, found))
                continue
            verdict = self._absence_absent.get(key)
            if verdict is None:
                verdict = Verdict(rule, system_id, _shown_target(rule, target), False, NO_EVIDENCE)
                self._absence_absent[key] = verdict
            call.emit(verdict)
