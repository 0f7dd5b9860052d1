"""Compliance ratio per system and framework, from `sentinel.compliance`, assessed in a background thread.

Assessing a large estate takes seconds (every system × every framework requirement), far too long for a scrape,
so a thread re-assesses on its own connection when the store has changed (or the last assessment is an hour
old, as evidence ages out with time) and scrapes export the latest result with its timestamp.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sentinel.compliance import assess, load_frameworks, ratios
from sentinel.compliance.frameworks import Framework
from sentinel.engine.rule import Rule
from sentinel.exporter.family import Family
from sentinel.registry.models import Registry
from sentinel.store import SqliteStore

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 3600.0


class ComplianceFamilies:
    """A `live` family source for `StoreExporter`: call `start()` to assess in the background."""

    def __init__(
        self,
        store_path: Path | str,
        registry: Registry,
        rules: Sequence[Rule],
        frameworks: Sequence[Framework] | None = None,
        interval: float = 60.0,
    ) -> None:
        self.store_path = str(store_path)
        self.registry = registry
        self.rules = list(rules)
        self.frameworks = list(frameworks) if frameworks is not None else load_frameworks()
        self.interval = interval
        self._families: list[Family] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, store: SqliteStore) -> list[Family]:
        with self._lock:
            return list(self._families)

    def refresh(self, store: SqliteStore) -> None:
        """Assess now (on the caller's thread) and publish the result."""
        started = time.monotonic()
        now = datetime.now(UTC)
        verdicts = assess(store, self.registry, self.frameworks, now, rules=self.rules)
        ratio = Family.gauge(
            "sentinel_compliance_ratio",
            "Share of applicable framework requirements with no remote finding (not-assessed counts against).",
            ["system", "framework"],
        )
        for r in ratios(verdicts, self.registry, "system"):
            if r.ratio is not None:
                ratio.add([r.group, r.framework], r.ratio)
        when = Family.gauge("sentinel_compliance_assessment_timestamp_seconds", "When compliance was last assessed.")
        when.add([], now.timestamp())
        took = Family.gauge("sentinel_compliance_assessment_duration_seconds", "How long the last assessment took.")
        took.add([], time.monotonic() - started)
        with self._lock:
            self._families = [ratio, when, took]

    def _run(self) -> None:
        store = SqliteStore(self.store_path)
        try:
            seen: int | None = None
            assessed = 0.0
            while not self._stop.is_set():
                version = store.data_version()[0]
                if version != seen or time.monotonic() - assessed > MAX_AGE_SECONDS:
                    try:
                        self.refresh(store)
                    except Exception as exc:  # keep serving the last result; the log says why it is old
                        log.error("compliance assessment failed: %s", exc)
                    seen, assessed = version, time.monotonic()
                self._stop.wait(self.interval)
        finally:
            store.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="compliance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
