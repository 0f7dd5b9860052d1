"""One evaluation call: everything that belongs to one `evaluate(...)` and to nothing after it.

An `Evaluation` is made per call (a sweep, a capture window, a fixture step). It holds the targets with an
active finding that the caller passed, the verdicts being emitted, the call's timestamp cache, the state
keys it touched and the absence arrivals it saw. The engine keeps only what outlives a call (rules, plans,
the rules' memory, the verdicts deliberately reused from the previous call), so a call's leftovers can
never leak into the next one.

`judge` is the one place where a rule meets an observation: stateless rules are decided here, rules with
memory are handed to `RuleMemory`. The sweep path (`observe`, with guard-index skipping) and the stateless
one-shot path (`RuleSet.evaluate_stateless`) both go through it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sentinel.engine.entry import Entry, field_view
from sentinel.engine.evidence import Stamps, observed
from sentinel.engine.rule import Rule
from sentinel.engine.state import State, StateKey
from sentinel.engine.verdict import NO_EVIDENCE, Verdict, new_verdict
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import System

if TYPE_CHECKING:  # types only: both import this module's Evaluation
    from sentinel.engine.plans import Plans
    from sentinel.engine.stateful import RuleMemory

Target = tuple[str, str]  # (system_id, target)
#: Per target, its absent and unknown verdicts by rule number (immutable, so reusable from call to call).
VerdictCache = dict[Target, dict[int, Verdict]]
_OK = ObservationStatus.OK
_UNKNOWN_KEYS = 1 << 30  # unknown verdicts' cache keys sit apart from absent (>= 0) and flapping (< 0) ones


class Evaluation:
    """The state of one evaluation call: made by `AnomalyEngine.begin` (closed by `finish`), or without memory
    by `RuleSet.evaluate_stateless`."""

    __slots__ = (
        "_build_plan",
        "_gated",
        "_memory",
        "_plans",
        "_reusable",
        "absent",
        "active_targets",
        "arrived",
        "dirty",
        "emit",
        "stamps",
        "verdicts",
    )

    def __init__(
        self,
        active_targets: set[Target] | None,
        memory: RuleMemory | None = None,
        plans: Plans | None = None,
        reusable: VerdictCache | None = None,
    ) -> None:
        #: Targets with an open or acknowledged finding. When set, stateless rules emit "absent" verdicts
        #: only for these (elsewhere there is nothing to clear), which lets the call skip rules whose guard
        #: is false. None: every definite verdict is emitted.
        self.active_targets = active_targets
        self.verdicts: list[Verdict] = []
        self.emit: Callable[[Verdict], None] = self.verdicts.append
        self.stamps = Stamps()
        self.dirty: dict[StateKey, State] = {}  # the rules' state touched by this call, saved when it finishes
        self.arrived: dict[StateKey, datetime] = {}  # absence rules: the latest arrival per key in this call
        self.absent: VerdictCache = {}  # this call's reusable verdicts, handed on to the next call
        self._reusable: VerdictCache = reusable if reusable is not None else {}  # the previous call's
        self._memory = memory  # None: rules with memory are skipped (the stateless one-shot path)
        self._gated = memory.gated if memory is not None else frozenset()
        self._plans = plans.by_kind if plans is not None else {}
        self._build_plan = plans.build if plans is not None else None

    def observe(self, obs: Observation) -> None:
        """Evaluate every applicable rule on one observation (skipping those that cannot matter)."""
        plans = self._plans.get(obs.kind)
        if plans is None:
            return  # no rule reads this kind
        sid = obs.system_id
        plan = plans.get(sid)
        if plan is None:
            plan = self._build_plan(obs.kind, sid) if self._build_plan is not None else None
            if plan is None:
                return  # not a registered system
        entries = plan.entries
        if not entries:
            return
        pair = (sid, obs.target)
        active = self.active_targets
        tracked = active is not None and pair in active  # a finding is active here: report unknowns too
        want_absent = active is None or tracked
        if not want_absent and pair not in self._gated:
            # Nothing is open on this target and no hysteresis is counting on it, so only "present"
            # outcomes (and rules with other memory) matter: skip every rule whose guard is not true.
            entries = plan.skip.candidates(obs)
            if not entries:
                return
        self.judge(entries, obs, plan.system, want_absent, tracked)

    def judge(self, entries: list[Entry], obs: Observation, system: System, want_absent: bool, tracked: bool) -> None:
        """Decide `entries` on `obs`. `want_absent`: emit "checked, not there" verdicts; `tracked`: a finding
        is active on the target, so emit "could not tell" too (the tracker marks it stale)."""
        view = field_view(obs)
        get = view.get
        sid, target = obs.system_id, obs.target
        ok = obs.status is _OK  # an error observation can show a problem, never its absence
        emit = self.emit
        absent = self.absent_cache((sid, target)) if want_absent else None
        memory = self._memory
        for entry in entries:
            if entry.stateful:
                if memory is not None:
                    memory.observe(self, entry, obs, view, system, want_absent, tracked)
                continue
            outcome = entry.test(get)
            if outcome is True:
                found = observed(entry.evidence_fields, get, obs, self.stamps.of(obs.observed_at))
                emit(new_verdict(Verdict, (entry.rule, sid, target, True, found)))
            elif outcome is False and ok:
                if absent is not None:
                    verdict = absent.get(entry.number)
                    if verdict is None:
                        verdict = absent[entry.number] = new_verdict(
                            Verdict, (entry.rule, sid, target, False, NO_EVIDENCE)
                        )
                    emit(verdict)
            elif tracked:
                emit(self.unknown_verdict(entry.number, entry.rule, sid, target))

    # -- reused verdicts ----------------------------------------------------------------------
    def absent_cache(self, pair: Target) -> dict[int, Verdict]:
        """The target's reusable verdicts: taken over from the previous call when it had them, so a sweep of
        targets with open findings allocates almost nothing that outlives it (the garbage collector's full
        passes stay rare)."""
        if self._memory is None:
            return {}  # a one-shot call has no next call to reuse them: keeping them would only load the GC
        cache = self.absent.get(pair)
        if cache is None:
            cache = self._reusable.pop(pair, None)
            if cache is None:
                cache = {}
            self.absent[pair] = cache
        return cache

    def absent_verdict(self, number: int, rule: Rule, system_id: str, target: str) -> Verdict:
        """The (reused) absent verdict of the rule numbered `number` (negative: its flapping companion)."""
        cache = self.absent_cache((system_id, target))
        verdict = cache.get(number)
        if verdict is None:
            verdict = cache[number] = new_verdict(Verdict, (rule, system_id, target, False, NO_EVIDENCE))
        return verdict

    def unknown_verdict(self, number: int, rule: Rule, system_id: str, target: str) -> Verdict:
        """The (reused) "observed, could not tell" verdict of the rule numbered `number`."""
        cache = self.absent_cache((system_id, target))
        key = ~number - _UNKNOWN_KEYS
        verdict = cache.get(key)
        if verdict is None:
            verdict = cache[key] = new_verdict(Verdict, (rule, system_id, target, None, NO_EVIDENCE))
        return verdict
