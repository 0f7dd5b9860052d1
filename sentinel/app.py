"""Composition root: builds registry, probes, rules, store, tracker and sinks from Settings, and runs sweeps.

Nothing here is created at import time; every object graph comes from one `Sentinel(settings)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sentinel.config.settings import Settings
from sentinel.engine.anomaly import AnomalyEngine
from sentinel.engine.loader import load_rules
from sentinel.engine.paths import shipped_rules_dir
from sentinel.engine.ruleset import RuleSet
from sentinel.engine.state import StoreState
from sentinel.errors import InputError, Problem
from sentinel.findings.exceptions import RiskException, apply_exceptions, load_exceptions
from sentinel.findings.policy import FindingsSettings
from sentinel.findings.tracker import FindingTracker
from sentinel.models import FindingStatus
from sentinel.registry.loader import load_registry
from sentinel.registry.models import Registry
from sentinel.sinks import Sink, SweepOutcome, build_sinks
from sentinel.sinks.elasticsearch.outbox import install_outbox
from sentinel.store import SqliteStore

if TYPE_CHECKING:  # the collectors (aiohttp, raw sockets) load only when a sweep is planned or run
    from sentinel.collectors.network import ScopedNetwork
    from sentinel.collectors.runner import PlannedJob

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Sentinel:
    def __init__(
        self,
        settings: Settings,
        registry: Registry | None = None,
        clock: Clock = utcnow,
        findings_policy: FindingsSettings | None = None,
    ) -> None:
        self.settings = settings
        self._registry = registry
        self.clock = clock
        self._findings_policy = findings_policy

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            if self.settings.registry is None:
                raise InputError([Problem("settings", None, "no registry given (--registry PATH or 'registry:')")])
            self._registry = load_registry(self.settings.registry)
        return self._registry

    @cached_property
    def rule_paths(self) -> list[Path]:
        return list(self.settings.rules) or [shipped_rules_dir()]

    @cached_property
    def rules(self) -> RuleSet:
        return RuleSet(load_rules(self.rule_paths))

    @cached_property
    def store(self) -> SqliteStore:
        store = SqliteStore(self.settings.store)
        # Queue findings and observations for Elasticsearch in the same transactions that record them.
        install_outbox(store, self.settings, registry=lambda: self._registry)
        return store

    @cached_property
    def tracker(self) -> FindingTracker:
        return FindingTracker(self.store)

    @property
    def findings_policy(self) -> FindingsSettings:
        """SLA and exceptions file: given explicitly, or the settings' `findings:` section."""
        if self._findings_policy is None:
            self._findings_policy = self.settings.findings
        return self._findings_policy

    @cached_property
    def exceptions(self) -> list[RiskException]:
        path = self.findings_policy.exceptions
        return load_exceptions(path) if path is not None else []

    @cached_property
    def anomaly(self) -> AnomalyEngine:
        """The rule engine with memory; its state lives in the store so restarts keep baselines."""
        return AnomalyEngine(self.rules, self.registry, StoreState(self.store))

    @cached_property
    def sinks(self) -> list[Sink]:
        return build_sinks(self.settings.sinks)

    def plan(self) -> list[PlannedJob]:
        from sentinel.collectors import build_probes
        from sentinel.collectors.runner import plan_sweep

        return plan_sweep(self.registry, build_probes(self.settings.collectors))

    def validate(self) -> None:
        """Load everything a sweep needs, so user mistakes surface before any packet is sent."""
        _ = self.registry, self.rules, self.sinks, self.exceptions
        from sentinel.collectors import build_probes

        build_probes(self.settings.collectors)

    async def sweep(self, net: ScopedNetwork | None = None) -> SweepOutcome:
        """One sweep. `net` lets a long-running monitor share one rate limiter and circuit breaker
        across sweeps, so slices and probes running side by side never exceed a target's budget."""
        self.validate()
        planned = self.plan()
        started = self.clock()
        # The audit record goes in before the first packet.
        sweep_id = self.store.start_sweep(started, self.settings.actor, self.settings.fingerprint(), len(planned))
        own = net is None
        from sentinel.collectors.network import ScopedNetwork
        from sentinel.collectors.runner import run_sweep_jobs

        net = net or ScopedNetwork(self.registry.scope, self.settings.collectors)
        try:
            observations = await run_sweep_jobs(
                planned, net, self.settings.collectors.max_jobs, self.settings.collectors.job_timeout
            )
        finally:
            if own:  # a shared network belongs to the monitor, which closes it
                await net.close()
        finished = self.clock()
        with self.store.transaction():
            self.store.save_observations(observations)
            # Engine state commits with the findings. Only targets with an open finding need "absent"
            # verdicts (to resolve it); elsewhere the engine may skip rules whose guard is false.
            active = {
                (f.system_id, f.target)
                for f in self.store.list_findings(statuses=[FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED])
            }
            verdicts = self.anomaly.evaluate(observations, finished, active)
            changes = self.tracker.apply(verdicts, finished)
            apply_exceptions(self.tracker, self.exceptions, finished)
            self.tracker.expire_suppressions(finished)
            self.store.finish_sweep(
                sweep_id,
                finished,
                {
                    "jobs": len(planned),
                    "observations": len(observations),
                    "errors": sum(1 for o in observations if o.status.value == "error"),
                    "new": len(changes.new),
                    "resolved": len(changes.resolved),
                    "reopened": len(changes.reopened),
                    "method": ",".join(sorted({str(o.data["method"]) for o in observations if "method" in o.data})),
                    "connections": sum(net.sent.values()),
                },
            )
        outcome = SweepOutcome(sweep_id, started, finished, observations, changes)
        for sink in self.sinks:
            try:
                sink.publish(outcome)
            except Exception as exc:  # a sink failing must not lose the sweep: the store already has it
                log.error("sink %s failed: %s", sink.name, exc)
        return outcome

    def scan(self) -> SweepOutcome:
        return asyncio.run(self.sweep())

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
        for sink in self.__dict__.get("sinks", []):
            sink.close()
