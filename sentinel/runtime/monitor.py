"""`sentinel run`: every probe on its own interval, each sweep cut into slices spread across it.

A probe's interval is divided into slices of about `run.slice_seconds`; slice i of n sweeps the
systems that rendezvous hashing puts in bucket i (the same function as `--shard`), so a city's
1,354 systems are probed a few dozen at a time instead of all at once, and their results are
evaluated as each slice completes. Everything that must survive a restart (findings, baselines,
outbox, notification ledger) lives in the store, so a restart re-opens and re-notifies nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from sentinel.advisories.book import AdvisoryBook
from sentinel.app import Sentinel, open_store
from sentinel.collectors.network import ScopedNetwork
from sentinel.config.settings import Settings
from sentinel.engine.loader import load_rules, rule_files
from sentinel.errors import InputError, SentinelError
from sentinel.notify.notifier import Notifier
from sentinel.paths import shipped_rules_dir
from sentinel.registry.loader import load_registry, registry_files
from sentinel.registry.models import Registry
from sentinel.registry.sharding import shard_registry
from sentinel.sinks import OutboxSink, build_sinks
from sentinel.sinks.settings import sink_sections
from sentinel.sinks.shipper import Shipper
from sentinel.store import SqliteStore
from sentinel.traffic.analyze import with_unregistered
from sentinel.traffic.intel import ThreatIntel, load_intel, shipped_intel_dir
from sentinel.traffic.sniff import LiveCapture

log = logging.getLogger("sentinel.run")
SettingsLoader = Callable[[], Settings]
ListenerFactory = Callable[["Monitor"], web.Application]


@dataclass
class Loaded:
    """One consistent configuration: settings, registry (already sharded) and the files they came from."""

    settings: Settings
    registry: Registry
    files: dict[Path, float] = field(default_factory=dict)
    #: one door for every probe and slice: shared rate limits, concurrency caps and circuit breaker
    net: ScopedNetwork | None = None

    def network(self) -> ScopedNetwork:
        if self.net is None:
            self.net = ScopedNetwork(self.registry.scope, self.settings.collectors)
        return self.net


def _mtimes(paths: list[Path]) -> dict[Path, float]:
    out = {}
    for p in paths:
        with contextlib.suppress(OSError):
            out[p] = p.stat().st_mtime
    return out


class Monitor:
    def __init__(
        self,
        load_settings: SettingsLoader,
        config_file: Path | None = None,
        shard: tuple[int, int] | None = None,
        listener: ListenerFactory | None = None,
    ) -> None:
        self._load_settings = load_settings
        self._config_file = config_file
        self._shard = shard
        self._listener_factory = listener
        self.current = self._load()  # raises InputError: a bad start-up configuration exits 2
        self.stopping = asyncio.Event()
        self.sweeps_done = 0
        self.ready = False
        self._reload_requested = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- configuration --------------------------------------------------------------------------
    def _load(self) -> Loaded:
        settings = self._load_settings()
        if settings.registry is None:
            raise InputError([settings.locate(("registry",), "no registry given (--registry PATH or 'registry:')")])
        registry = load_registry(settings.registry)
        if self._shard is not None:
            registry = shard_registry(registry, *self._shard)
        rule_paths = list(settings.rules) or [shipped_rules_dir()]
        load_rules(rule_paths)  # validate now: a bad rule must never replace good ones
        watched = [*registry_files(settings.registry), *(f for p in rule_paths for f in rule_files(p))]
        if self._config_file is not None:
            watched.append(self._config_file)
        return Loaded(settings, registry, _mtimes(watched))

    def reload(self) -> bool:
        """Swap in the new configuration if it is valid; otherwise keep the running one and say why."""
        try:
            fresh = self._load()
        except InputError as exc:
            for problem in exc.problems:
                log.error("reload rejected: %s", problem)
            log.error("keeping the running configuration (%d systems)", len(self.current.registry.systems))
            return False
        old, self.current = self.current, fresh
        if old.net is not None:
            asyncio.get_running_loop().create_task(self._close_later(old.net))
        log.info("configuration reloaded: %d systems", len(fresh.registry.systems))
        for probe in self._probe_names():  # a probe added by the reload starts now
            task = self._tasks.get(probe)
            if task is None or task.done():
                self._tasks[probe] = asyncio.get_running_loop().create_task(
                    self._probe_loop(probe), name=f"probe:{probe}"
                )
        return True

    async def _close_later(self, net: ScopedNetwork) -> None:
        """Close a replaced network once the slices still using it have had time to finish."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), self.current.settings.run.shutdown_grace)
        await net.close()

    def _changed(self) -> bool:
        return _mtimes(list(self.current.files)) != self.current.files

    # -- loops ----------------------------------------------------------------------------------
    def _probe_names(self) -> list[str]:
        """The sweep's probes plus those that run only here, on their own longer interval (port discovery)."""
        s = self.current.settings
        return list(dict.fromkeys([*s.collectors.probes, *s.run.extra_probes]))

    async def _probe_loop(self, probe: str) -> None:
        while not self.stopping.is_set():
            if probe not in self._probe_names():
                log.info("probe %s is no longer configured; its loop ends", probe)
                return
            loaded = self.current
            run = loaded.settings.run
            interval = run.intervals.get(probe, run.default_interval)
            slices = max(1, round(interval / run.slice_seconds))
            period = interval / slices
            for index in range(1, slices + 1):
                if self.stopping.is_set() or loaded is not self.current:
                    break  # stop, or a reload: start over with the new configuration
                started = asyncio.get_running_loop().time()
                await self._sweep_slice(loaded, probe, index, slices)
                elapsed = asyncio.get_running_loop().time() - started
                pause = max(0.0, period - elapsed) + random.uniform(0, run.jitter * period)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), pause)

    async def _sweep_slice(self, loaded: Loaded, probe: str, index: int, slices: int) -> None:
        registry = shard_registry(loaded.registry, index, slices)
        if not registry.systems:
            return
        settings = loaded.settings.model_copy(
            update={"collectors": loaded.settings.collectors.model_copy(update={"probes": [probe]})}
        )
        app = Sentinel(settings, registry=registry, ship_inline=False)  # the ship loop delivers
        try:
            outcome = await app.sweep(net=loaded.network())
        except SentinelError as exc:
            log.error("sweep of %s slice %d/%d failed: %s", probe, index, slices, exc)
            return
        except Exception:  # a bug must not silently end this probe's loop: log it and try the next slice
            log.exception("sweep of %s slice %d/%d failed", probe, index, slices)
            return
        finally:
            app.close()
        self.sweeps_done += 1
        self.ready = True
        ch = outcome.changes
        log.info(
            "%s slice %d/%d: %d systems, %d observations, %d new, %d resolved, %d reopened",
            probe,
            index,
            slices,
            len(registry.systems),
            len(outcome.observations),
            len(ch.new),
            len(ch.resolved),
            len(ch.reopened),
            extra={"probe": probe, "slice": index, "slices": slices, "sweep_id": outcome.sweep_id},
        )

    async def _notify_loop(self) -> None:
        while not self.stopping.is_set():
            settings = self.current.settings
            if settings.notify.smtp is not None or settings.notify.webhooks:
                await asyncio.to_thread(self._notify_once, settings, self.current.registry)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), settings.run.notify_every)

    async def _advisory_loop(self) -> None:
        """Receive the other sites' early warnings; each sweep slice builds its rules from the store, so a warning
        received here applies from the next slice on."""
        while not self.stopping.is_set():
            settings = self.current.settings
            every = settings.run.advisory_sync_every
            if every and "elasticsearch" in sink_sections(settings):
                await asyncio.to_thread(self._advisories_once, settings, self.current.registry)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), every or settings.run.notify_every)

    @staticmethod
    def _advisories_once(settings: Settings, registry: Registry) -> None:
        app = Sentinel(settings, registry=registry, ship_inline=False)  # its own store connection (worker thread)
        try:
            received, bad = app.receive_advisories()
        except InputError as exc:  # the cluster is down or refuses: the warnings held still apply
            log.warning("early warnings not synced: %s", "; ".join(str(p) for p in exc.problems))
            return
        finally:
            app.close()
        for line in bad:
            log.warning("early warning skipped: %s", line)
        for a in received:
            log.info("early warning %s received from %s%s", a.id, a.issued_by, " (withdrawn)" if a.withdrawn_at else "")

    @staticmethod
    def _notify_once(settings: Settings, registry: Registry) -> None:
        store = open_store(settings.store)  # its own connection: this runs in a worker thread
        try:
            # custom rule folders and early warnings bring their own Chinese text; the shipped rules' is cached
            held = AdvisoryBook(store).all(active_only=True)
            rules = None
            if settings.rules or held:
                rules = {**Sentinel(settings, registry=registry).rules.by_id, **{a.rule_id: a.to_rule() for a in held}}
            report = Notifier(settings.notify, registry, store, policy=settings.findings, rules=rules).run(
                datetime.now(UTC)
            )
            for d in report.failed:
                log.warning("notification to %s failed: %s", d.digest.recipient.key, d.error)
            if report.sent:
                log.info("sent %d notifications", len(report.sent))
        finally:
            store.close()

    async def _ship_loop(self) -> None:
        """Drain every sink's outbox queue continuously: one loop for all sinks (in a worker thread, on its own
        connection), each sink in turn for at most `run.ship_every` seconds."""
        while not self.stopping.is_set():
            settings = self.current.settings
            if sink_sections(settings):
                await asyncio.to_thread(self._ship_once, settings)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), settings.run.ship_every)

    def _ship_once(self, settings: Settings) -> None:
        try:
            sinks = build_sinks(settings)
        except InputError as exc:  # a reload validated these; an environment change can still break them
            log.error("sinks not shipped: %s", "; ".join(str(p) for p in exc.problems))
            return
        store = open_store(settings.store)
        try:
            for sink in sinks:
                if self.stopping.is_set():
                    break
                self._ship_sink(store, sink, settings.run.ship_every)
        finally:
            for sink in sinks:
                sink.close()
            store.close()

    def _ship_sink(self, store: SqliteStore, sink: OutboxSink, budget: float) -> None:
        try:
            report = Shipper(store, sink).drain(timeout=budget, stop=self.stopping.is_set)
            # Failures are the shipper's to log (an outage once, then a summary a minute); a backlog that
            # simply did not fit in this drain is news, not a warning.
            if report.remaining and not report.last_error and not report.busy:
                log.info("%s outbox: %d documents still queued", sink.name, report.remaining)
        except Exception as exc:  # a dead sink must never stop the monitor; the outbox keeps everything
            log.warning("shipping to %s failed: %s", sink.name, exc)

    async def _sniff_loop(self) -> None:
        """Passive detectors on live traffic, window after window, through the same rules and tracker.

        The capture ring stays open across windows (reopened only when the interface or filter
        changes, or after an error), so traffic that arrives while a window is evaluated waits in
        the ring for the next one; each window reports the kernel's received/dropped counts."""
        live: LiveCapture | None = None
        try:
            while not self.stopping.is_set():
                loaded = self.current
                config = loaded.settings.run.sniff
                if config is None:
                    return
                try:
                    if live is not None and (live.iface, live.bpf) != (config.iface, config.bpf):
                        live.close()
                        live = None
                    if live is None:
                        live = await asyncio.to_thread(LiveCapture, config.iface, config.bpf)
                    result = await asyncio.to_thread(live.window, config.window, loaded.registry, self._intel())
                except Exception as exc:  # a vanished interface must not stop the monitor
                    log.error("live capture on %s failed: %s", config.iface, exc)
                    if live is not None:
                        live.close()
                        live = None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stopping.wait(), config.window)
                    continue
                # the same path as a sweep's: rules with memory, accepted risks, the audit record, the sinks
                app = Sentinel(loaded.settings, registry=with_unregistered(loaded.registry), ship_inline=False)
                try:
                    changes = app.ingest(result.observations, app.clock(), f"sniff:{config.iface}").changes
                finally:
                    app.close()
                log.info(
                    "traffic on %s: %d packets, %d received by the filter, %d dropped by the kernel, "
                    "%d observations, %d new findings",
                    config.iface,
                    result.packets,
                    result.received,
                    result.dropped,
                    len(result.observations),
                    len(changes.new),
                    extra={"capture_received": result.received, "capture_dropped": result.dropped},
                )
                if result.lossy:
                    log.warning(
                        "live capture on %s dropped %d of %d packets: this window's detections are incomplete",
                        config.iface,
                        result.dropped,
                        result.received,
                    )
        finally:
            if live is not None:
                live.close()

    @staticmethod
    def _intel() -> ThreatIntel:
        shipped = shipped_intel_dir()
        return load_intel([shipped]) if shipped.is_dir() else ThreatIntel()

    async def _reload_loop(self) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload_requested.wait(), self.current.settings.run.reload_check_every)
            if self.stopping.is_set():
                return
            if self._reload_requested.is_set() or self._changed():
                self._reload_requested.clear()
                if not self.reload():
                    # Remember the bad files' times so the same mistake is not reported every few seconds.
                    self.current.files = _mtimes(list(self.current.files))

    # -- lifecycle ------------------------------------------------------------------------------
    def request_stop(self) -> None:
        if not self.stopping.is_set():
            log.info("stopping: in-flight sweeps get %.0f s to finish", self.current.settings.run.shutdown_grace)
            self.stopping.set()

    def request_reload(self) -> None:
        self._reload_requested.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        runner = await self._start_listener()
        self._tasks = {p: asyncio.create_task(self._probe_loop(p), name=f"probe:{p}") for p in self._probe_names()}
        tasks = [
            asyncio.create_task(self._notify_loop(), name="notify"),
            asyncio.create_task(self._advisory_loop(), name="advisories"),
            asyncio.create_task(self._ship_loop(), name="ship"),
            asyncio.create_task(self._reload_loop(), name="reload"),
            asyncio.create_task(self._sniff_loop(), name="sniff"),
        ]
        log.info("monitoring %d systems with %s", len(self.current.registry.systems), ", ".join(self._probe_names()))
        await self.stopping.wait()
        tasks += list(self._tasks.values())
        _, pending = await asyncio.wait(tasks, timeout=self.current.settings.run.shutdown_grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()
        if self.current.net is not None:
            await self.current.net.close()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        log.info("stopped after %d sweeps", self.sweeps_done)
        return 0

    async def _start_listener(self) -> web.AppRunner | None:
        if self._listener_factory is None:
            return None
        host, _, port = self.current.settings.serve.listen.rpartition(":")
        runner = web.AppRunner(self._listener_factory(self), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port)).start()
        log.info("serving on http://%s", self.current.settings.serve.listen)
        return runner
