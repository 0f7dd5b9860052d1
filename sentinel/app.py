"""Composition root: builds registry, probes, rules, store, tracker and sinks from Settings, and runs sweeps.

Nothing here is created at import time; every object graph comes from one `Sentinel(settings)`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from sentinel.advisories.book import ADVISORIES_COMPONENT, AdvisoryBook
from sentinel.config.settings import Settings
from sentinel.engine.anomaly import AnomalyEngine
from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet
from sentinel.engine.state import StoreState
from sentinel.engine.state_schema import ENGINE_STATE_COMPONENT
from sentinel.errors import InputError, Problem
from sentinel.findings.exceptions import RiskException, apply_exceptions, load_exceptions
from sentinel.findings.policy import FindingsSettings
from sentinel.findings.tracker import FindingTracker
from sentinel.models.finding import ACTIVE_STATUSES
from sentinel.models.observer import Observer
from sentinel.notify.digest import NOTIFY_COMPONENT
from sentinel.paths import shipped_rules_dir
from sentinel.registry.loader import load_registry
from sentinel.registry.models import Registry
from sentinel.sinks import OutboxSink, SweepOutcome, build_sinks
from sentinel.sinks.elasticsearch.schema import ES_OUTBOX
from sentinel.sinks.outbox import SINK_OUTBOX, OutboxWriter, install_sinks
from sentinel.sinks.shipper import Shipper
from sentinel.store import SqliteStore
from sentinel.store.schema import SchemaComponent

if TYPE_CHECKING:  # the collectors (aiohttp, raw sockets) load only when a sweep is planned or run
    from sentinel.advisories import Advisory
    from sentinel.collectors.network import ScopedNetwork
    from sentinel.collectors.runner import PlannedJob, SweepProgress
    from sentinel.models import Finding, Observation

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]
#: seconds between progress writes to the sweep's audit record (what /metrics and the web view read)
PROGRESS_EVERY = 2.0


class RecheckError(InputError):
    """A re-check that cannot be run (no such finding, its system left the registry, no probe makes its kind)."""

    def __init__(self, message: str) -> None:
        super().__init__([Problem("recheck", None, message)])
        self.message = message


def utcnow() -> datetime:
    return datetime.now(UTC)


#: Every stage's store tables, applied when the store opens (the store itself knows only `core`). `es_outbox`
#: moves a pre-issue-12 Elasticsearch queue into the shared outbox and keeps its names as views.
SCHEMA_COMPONENTS: tuple[SchemaComponent, ...] = (
    ENGINE_STATE_COMPONENT,
    NOTIFY_COMPONENT,
    SINK_OUTBOX,
    ES_OUTBOX,
    ADVISORIES_COMPONENT,
)


def stamped(observations: Sequence[Observation], observer: Observer) -> list[Observation]:
    """The observations as this instance records them: with its site and vantage (collectors know neither)."""
    from sentinel.models import Observation  # at run time too (the module's import is for annotations)

    site, vantage = observer.site, observer.vantage
    # The constructor with every field by position: `dataclasses.replace` (which reads the fields and builds
    # keyword arguments per call) took twice as long, 35 ms of a capture's 12,071 observations.
    # tests/test_app_stamped.py fails if Observation gains a field this call does not pass on.
    return [
        o
        if o.site == site and o.vantage is vantage
        else Observation(
            o.kind, o.system_id, o.target, o.observed_at, o.probe, o.status, o.data, o.error, site, vantage
        )
        for o in observations
    ]


def open_store(path: Path | str) -> SqliteStore:
    """The store with every component's tables: what each process of Sentinel opens."""
    return SqliteStore(path, SCHEMA_COMPONENTS)


class Sentinel:
    def __init__(
        self,
        settings: Settings,
        registry: Registry | None = None,
        clock: Clock = utcnow,
        findings_policy: FindingsSettings | None = None,
        ship_inline: bool = True,
    ) -> None:
        """`ship_inline`: deliver to the sinks that want it right after each ingest (one-shot commands);
        `sentinel run` turns it off and ships every sink's queue from its own loop."""
        self.settings = settings
        self.ship_inline = ship_inline
        self._outbox: OutboxWriter | None = None
        self._registry = registry
        self.clock = clock
        self._findings_policy = findings_policy
        self._shared_store: SqliteStore | None = None  # a sibling's: opened and closed by its parent

    def sibling(self, registry: Registry, settings: Settings | None = None) -> Sentinel:
        """Another composition over a different registry (one system for a re-check, the registry plus the
        unregistered-hosts pseudo-system for traffic) that shares this one's loaded rules and open store;
        closing it leaves them to this one."""
        other = Sentinel(settings or self.settings, registry, self.clock, self._findings_policy, self.ship_inline)
        other.__dict__["rules"] = self.rules
        other.__dict__["ruleset"] = self.ruleset
        other._shared_store = self.store
        other._outbox = self._outbox
        return other

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            if self.settings.registry is None:
                raise InputError(
                    [self.settings.locate(("registry",), "no registry given (--registry PATH or 'registry:')")]
                )
            self._registry = load_registry(self.settings.registry)
        return self._registry

    @cached_property
    def rule_paths(self) -> list[Path]:
        return list(self.settings.rules) or [shipped_rules_dir()]

    @cached_property
    def rules(self) -> RuleSet:
        """The rule files' rules (what `validate` checks before any packet; needs no store)."""
        return RuleSet(load_rules(self.rule_paths))

    @cached_property
    def ruleset(self) -> RuleSet:
        """What ingest evaluates: the rule files' rules and one rule per early warning held in the store (a warning
        received later applies from the sweep after `refresh_advisories`)."""
        held = [a.to_rule() for a in AdvisoryBook(self.store).all(active_only=True)]
        return RuleSet([*self.rules.rules, *held]) if held else self.rules

    def refresh_advisories(self) -> None:
        """The warnings held changed (issued, received, withdrawn): rebuild the rules ingest evaluates."""
        for name in ("ruleset", "anomaly"):
            self.__dict__.pop(name, None)

    def receive_advisories(self) -> tuple[list[Advisory], list[str]]:
        """Read every site's early warnings from the shared Elasticsearch cluster and keep the other sites' (new,
        changed, withdrawn). Returns what changed here, and a line per cluster document that is not a warning."""
        from sentinel.sinks.elasticsearch.advisories import fetch_advisories
        from sentinel.sinks.elasticsearch.client import build_client
        from sentinel.sinks.elasticsearch.settings import require_elasticsearch_settings
        from sentinel.sinks.elasticsearch.templates import IndexNames

        es = require_elasticsearch_settings(self.settings)
        client = build_client(es)
        try:
            found, bad = fetch_advisories(client, IndexNames(es.index_prefix, es.site), es.url)
        finally:
            client.close()
        received = AdvisoryBook(self.store).receive(found, self.settings.site, self.tracker, self.settings.actor)
        if received:
            self.refresh_advisories()
            if self.ship_inline:
                self.ship()
        return received, bad

    @cached_property
    def store(self) -> SqliteStore:
        if self._shared_store is not None:
            return self._shared_store
        store = open_store(self.settings.store)
        # Queue findings (and observations, for sinks that want them) for every sink in the transactions that
        # record them: a sink that is down loses nothing, a rolled-back sweep queues nothing.
        if self.sinks:
            self._outbox = install_sinks(store, self.sinks, registry=lambda: self._registry)
        return store

    @cached_property
    def tracker(self) -> FindingTracker:
        return FindingTracker(self.store, self.settings.observer)

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
        return AnomalyEngine(self.ruleset, self.registry, StoreState(self.store))

    @cached_property
    def sinks(self) -> list[OutboxSink]:
        return build_sinks(self.settings)

    def ship(self, inline_only: bool = True) -> None:
        """Deliver what the sinks' queues hold now, without waiting out a backoff (a dead sink costs one attempt;
        its rows wait for `sentinel run` or `sentinel sinks ship`). `inline_only`: only sinks that want it."""
        for sink in self.sinks:
            if inline_only and not sink.flush_inline:
                continue
            try:
                Shipper(self.store, sink).drain(wait=False)
            except Exception as exc:  # a sink failing must not lose the sweep: the store and the outbox have it
                log.error("sink %s failed: %s", sink.name, exc)

    def plan(self, on_system: Callable[[int], None] | None = None) -> list[PlannedJob]:
        from sentinel.collectors import build_probes
        from sentinel.collectors.runner import plan_sweep

        return plan_sweep(self.registry, build_probes(self.settings.collectors), on_system=on_system)

    def validate(self) -> None:
        """Load everything a sweep needs, so user mistakes surface before any packet is sent."""
        _ = self.registry, self.rules, self.sinks, self.exceptions
        from sentinel.collectors import build_probes

        build_probes(self.settings.collectors)

    async def sweep(
        self,
        net: ScopedNetwork | None = None,
        progress: Callable[[SweepProgress], None] | None = None,
        only: Callable[[PlannedJob], bool] | None = None,
    ) -> SweepOutcome:
        """One sweep. `net` lets a long-running monitor share one rate limiter and circuit breaker
        across sweeps, so slices and probes running side by side never exceed a target's budget.
        `progress` is called as each job finishes; `only` keeps a subset of the planned jobs (a re-check)."""
        self.validate()
        planned = self.plan()
        if only is not None:
            planned = [p for p in planned if only(p)]
        started = self.clock()
        # A store that holds another site's or vantage's findings is refused before the first packet.
        self.store.claim_identity(self.settings.observer, started)
        # The audit record goes in before the first packet.
        sweep_id = self.store.start_sweep(started, self.settings.actor, self.settings.fingerprint(), len(planned))
        own = net is None
        from sentinel.collectors.network import ScopedNetwork
        from sentinel.collectors.runner import SweepProgress, run_sweep_jobs

        state = SweepProgress(len(planned))
        last_write = [state.started]

        def job_done(_: PlannedJob, found: list[Observation]) -> None:
            state.done += 1
            state.observations += len(found)
            state.errors += sum(1 for o in found if o.status.value == "error")
            # A preview from the stateless rules (rules with memory decide at the end of the sweep).
            state.findings += sum(1 for v in self.ruleset.evaluate_stateless(found, self.registry) if v.present)
            if progress is not None:
                progress(state)
            now = time.monotonic()
            if now - last_write[0] >= PROGRESS_EVERY or state.done == state.total:
                last_write[0] = now
                self.store.sweep_progress(sweep_id, state.done, state.findings, self.clock())

        net = net or ScopedNetwork(self.registry.scope, self.settings.collectors)
        try:
            observations = await run_sweep_jobs(
                planned, net, self.settings.collectors.max_jobs, self.settings.collectors.job_timeout, job_done
            )
        finally:
            if own:  # a shared network belongs to the monitor, which closes it
                await net.close()
        summary = {
            "jobs": len(planned),
            "method": ",".join(sorted({str(o.data["method"]) for o in observations if "method" in o.data})),
            "connections": sum(net.sent.values()),
        }
        return self.ingest(observations, self.clock(), "sweep", sweep=(sweep_id, started), summary=summary)

    def ingest(
        self,
        observations: Sequence[Observation],
        now: datetime,
        source: str,
        sweep: tuple[int, datetime] | None = None,
        summary: Mapping[str, object] | None = None,
    ) -> SweepOutcome:
        """The one path from observations to findings, for every source: a sweep, a re-check, a capture file,
        a live capture window. In one transaction: store the observations, evaluate every rule (stateless and
        with memory), merge the verdicts into findings, apply accepted risks and suppression expiry, and close
        the audit record; then publish to the sinks. `sweep`: the audit record (id, start) a sweep opened
        before its first packet; other sources get one here. `source` names where the observations came from
        (`sweep`, `pcap:FILE`, `sniff:IFACE`) in that record. Every observation is stamped here with the
        instance's site and vantage, and the store records them (adopting rows from before sites) the first time."""
        observations = stamped(observations, self.settings.observer)
        _ = self.registry  # loaded first: findings adopted by the claim are shipped with their registry metadata
        self.store.claim_identity(self.settings.observer, now)
        if sweep is None:
            sweep = (self.store.start_sweep(now, self.settings.actor, self.settings.fingerprint(), 0, source), now)
        sweep_id, started = sweep
        _ = self.store  # opened (and the outbox installed) before the transaction
        if self._outbox is not None:
            self._outbox.sweep_id = sweep_id  # events queued by this transaction name its sweep
        try:
            with self.store.transaction():
                self.store.save_observations(observations)
                # Engine state commits with the findings. Only targets with an open finding need "absent"
                # verdicts (to resolve it); elsewhere the engine may skip rules whose guard is false.
                active = {(f.system_id, f.target) for f in self.store.list_findings(statuses=ACTIVE_STATUSES)}
                verdicts = self.anomaly.evaluate(observations, now, active)
                changes = self.tracker.apply(verdicts, now)
                apply_exceptions(self.tracker, self.exceptions, now)
                self.tracker.expire_suppressions(now)
                self.store.finish_sweep(
                    sweep_id,
                    now,
                    {
                        "source": source,
                        "observations": len(observations),
                        # a StrEnum equals its value: no enum descriptor lookup per observation
                        "errors": sum(1 for o in observations if o.status == "error"),
                        "new": len(changes.new),
                        "resolved": len(changes.resolved),
                        "reopened": len(changes.reopened),
                        **(summary or {}),
                    },
                )
        finally:
            if self._outbox is not None:
                self._outbox.sweep_id = None
        outcome = SweepOutcome(sweep_id, started, now, list(observations), changes)
        if self.ship_inline:
            self.ship()
        return outcome

    def scan(self, progress: Callable[[SweepProgress], None] | None = None) -> SweepOutcome:
        # The outcome is not the main task's result: asyncio.run formats that task when it restores the SIGINT
        # handler (CPython 3.11), and the repr of a sweep's observations cost a second and ~90 MB at 1,354 systems.
        done: list[SweepOutcome] = []

        async def main() -> None:
            done.append(await self.sweep(progress=progress))

        asyncio.run(main())
        return done[0]

    async def recheck(self, finding_id: str, actor: str, net: ScopedNetwork | None = None) -> Finding:
        """复核: run the probe(s) that observe this finding's rule, for its system and target only, through the
        scoped network (scope, rate limits, circuit breaker), and evaluate the result the normal way. The finding
        closes on evidence, goes back to the owner if the problem is still there, or waits (stale) if the probe
        could not tell; every step is in its history."""
        finding = self.store.get_finding(finding_id)
        if finding is None:
            raise RecheckError(f"no finding {finding_id}")
        system = self.registry.system(finding.system_id)
        if system is None:
            raise RecheckError(f"system {finding.system_id} is not in the registry")
        rule = next((r for r in self.ruleset.rules if r.id == finding.rule_id), None)
        if rule is None:
            raise RecheckError(f"rule {finding.rule_id} is not loaded")
        from sentinel.collectors import build_probes

        configured = {p.name: p for p in build_probes(self.settings.collectors)}
        seen = self.store.probes_that_observed(finding.system_id, finding.target, list(rule.observation))
        names = [name for name in seen if name in configured]
        names = names or [n for n, p in configured.items() if p.kind in rule.observation]
        if not names:
            raise RecheckError(f"no configured probe observes {', '.join(rule.observation)} (rule {rule.id})")
        jobs = [j for n in names for j in configured[n].plan(system)]
        exact = {j.target for j in jobs if j.target == finding.target}
        hosts = {j.host for j in jobs if j.host and j.host in finding.target}

        def wanted(p: PlannedJob) -> bool:
            if exact:
                return p.job.target in exact
            return p.job.host in hosts if hosts else True

        now = self.clock()
        self.tracker.note(finding, actor, f"re-check requested ({', '.join(names)})", now)
        settings = self.settings.model_copy(
            update={
                "actor": f"{actor} (re-check {finding.id[:12]})",
                "collectors": self.settings.collectors.model_copy(update={"probes": names}),
            }
        )
        sub = self.sibling(Registry(scope=self.registry.scope, systems=(system,)), settings)
        try:
            outcome = await sub.sweep(net, only=wanted)
        finally:
            sub.close()
        after = self.store.get_finding(finding.id) or finding
        if after.status == finding.status and after.status_reason == finding.status_reason:
            errors = [o.error for o in outcome.observations if o.status.value == "error" and o.error]
            why = f"re-check could not tell ({errors[0]})" if errors else "re-check could not tell"
            self.tracker.note(
                after, "sentinel", f"{why}; it stays {after.status.value} until a sweep sees it", self.clock()
            )
        return self.store.get_finding(finding.id) or after

    def close(self) -> None:
        if "store" in self.__dict__ and self._shared_store is None:
            self.store.close()
        for sink in self.__dict__.get("sinks", []):
            sink.close()
