"""The rule engine for every rule, with or without memory, over observations of any source (a sweep, a
capture window, a fixture step): `evaluate(observations, now, active_targets)` per batch.

The engine holds only what outlives a call: the rules, the registry's plans (which rules apply to which
system, with their skip index), the rules' memory (`RuleMemory`, in a `StateBackend`) and the verdicts
reused from the previous call. Everything that belongs to one call lives in the `Evaluation` that
`begin` makes and `finish` closes (`evaluate` does both). Calls are sequential: the memory of one call
(counters, baselines, last seen) is what the next one starts from, so a `for: 3` rule fires on the third
consecutive batch whatever produced the batches. Observations of unregistered systems are ignored: a
caller whose observations name pseudo systems (the traffic analyser's `unregistered`) builds the engine
over a registry that includes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sentinel.engine.evaluation import Evaluation, Target, VerdictCache
from sentinel.engine.features import DEFAULT_DIFFER, Differ
from sentinel.engine.plans import Plans
from sentinel.engine.ruleset import RuleSet
from sentinel.engine.state import MemoryState, State, StateBackend, StateKey
from sentinel.engine.stateful import RuleMemory
from sentinel.engine.verdict import Verdict
from sentinel.models import Observation
from sentinel.registry.models import Registry


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
        self.plans = Plans(rules, registry)
        backend: StateBackend = state if state is not None else MemoryState()
        self.memory = RuleMemory(rules, self.plans.systems, backend, differ or DEFAULT_DIFFER)
        # Absent and unknown verdicts of the last call, deliberately kept for the next one (they are
        # immutable): a sweep of targets with open findings then allocates almost nothing that outlives it.
        self._reusable: VerdictCache = {}

    @property
    def state(self) -> dict[StateKey, State]:
        """The rules' memory per (rule, system, target), loaded from the backend on first use."""
        return self.memory.load()

    def begin(self, active_targets: set[Target] | None = None) -> Evaluation:
        """Open one call; feed it with `Evaluation.observe`, close it with `finish`. `active_targets`: the
        (system_id, target) pairs with an open or acknowledged finding (see `Evaluation.active_targets`)."""
        self.memory.load()  # before the first skip decision, which reads the memory's `gated`
        reusable, self._reusable = self._reusable, {}
        return Evaluation(active_targets, self.memory, self.plans, reusable)

    def finish(self, call: Evaluation, now: datetime) -> list[Verdict]:
        """Close a call at `now`: absence checks, save the state it touched, and hand over its verdicts."""
        self.memory.finish(call, now)
        self._reusable = call.absent
        return call.verdicts

    def evaluate(
        self,
        observations: Iterable[Observation],
        now: datetime,
        active_targets: set[Target] | None = None,
    ) -> list[Verdict]:
        """One batch through every rule (stateless and with memory): `begin`, observe each, `finish(now)`."""
        call = self.begin(active_targets)
        observe = call.observe
        for obs in observations:
            observe(obs)
        return self.finish(call, now)
