"""The one outbox of every sink: rows queued per sink name in the very transaction that records findings and
observations (a store write hook), so a sink that is down loses nothing and a rolled-back sweep queues nothing.

Tables (schema component `sink_outbox`): `outbox` (the queue), `outbox_dead_letters` (rows a peer refused as
wrong), `outbox_counters` (totals per sink), `outbox_outage` (an ongoing outage per sink, so it is logged once and
summarised, across shipper instances), `outbox_lease` (which shipper drains a sink now: never two at once, so a
resend can only come from a retry), `outbox_sinks` (the sinks ever installed: their metrics are exported) and
`sink_state` (a sink's own persisted state, e.g. Alertmanager's active alerts).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel.advisories.model import Advisory
from sentinel.models import Finding, FindingStatus, Observation
from sentinel.registry.models import Registry, System
from sentinel.sinks.base import EncodeContext, Entry, FindingChange, OutboxSink
from sentinel.store import SqliteStore
from sentinel.store.schema import SchemaComponent

log = logging.getLogger(__name__)

COUNTERS = ("shipped_total", "deduplicated_total", "dead_lettered_total", "dropped_total", "retried_total")

SINK_OUTBOX = SchemaComponent(
    "sink_outbox",
    [
        # 1: queue, dead letters, counters, outage and lease per sink, installed sinks, per-sink state
        [
            """CREATE TABLE outbox (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                sink TEXT NOT NULL,
                stream TEXT NOT NULL,
                doc_id TEXT NOT NULL,
                body TEXT NOT NULL,
                enqueued_at REAL NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at REAL NOT NULL DEFAULT 0,
                last_error TEXT,
                coalesced INTEGER NOT NULL DEFAULT 0
            )""",
            "CREATE INDEX outbox_sink ON outbox (sink, seq)",
            # current-state rows: one queued per (sink, stream, id); a newer state replaces an unshipped older one
            "CREATE UNIQUE INDEX outbox_current ON outbox (sink, stream, doc_id) WHERE coalesced = 1",
            """CREATE TABLE outbox_dead_letters (
                seq INTEGER PRIMARY KEY,
                sink TEXT NOT NULL,
                stream TEXT NOT NULL,
                doc_id TEXT NOT NULL,
                body TEXT NOT NULL,
                enqueued_at REAL NOT NULL,
                dead_at REAL NOT NULL,
                status INTEGER NOT NULL,
                reason TEXT NOT NULL
            )""",
            "CREATE INDEX outbox_dead_letters_sink ON outbox_dead_letters (sink)",
            """CREATE TABLE outbox_counters (
                sink TEXT NOT NULL, name TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (sink, name)
            ) WITHOUT ROWID""",
            """CREATE TABLE outbox_outage (
                sink TEXT PRIMARY KEY, since REAL NOT NULL, reason TEXT NOT NULL, reported_at REAL NOT NULL
            )""",
            """CREATE TABLE outbox_lease (
                sink TEXT PRIMARY KEY, owner TEXT NOT NULL, pid INTEGER NOT NULL, until REAL NOT NULL
            )""",
            "CREATE TABLE outbox_sinks (sink TEXT PRIMARY KEY, installed_at REAL NOT NULL)",
            """CREATE TABLE sink_state (
                sink TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at REAL NOT NULL,
                PRIMARY KEY (sink, key)
            ) WITHOUT ROWID""",
        ],
    ],
)

RegistrySource = Registry | Callable[[], Registry | None] | None


@dataclass(frozen=True)
class OutboxStats:
    """One sink's queue now; counters are totals since the store was created.

    depth: rows waiting; oldest_age_seconds: age of the oldest waiting row (0 when empty); shipped_total: rows the
    peer stored; deduplicated_total: rows it already had (409); dead_lettered_total: rows refused as wrong and moved
    to `outbox_dead_letters`; dropped_total: not queued (queue full or disk low); retried_total: attempts put back.
    """

    depth: int
    oldest_age_seconds: float
    shipped_total: int
    deduplicated_total: int
    dead_lettered_total: int
    dropped_total: int
    retried_total: int
    dead_letters: int


EMPTY_STATS = OutboxStats(0, 0.0, 0, 0, 0, 0, 0, 0)


def has_outbox(store: SqliteStore) -> bool:
    return store.schema_version(SINK_OUTBOX.name) > 0


def outbox_stats(store: SqliteStore, sink: str, now: float | None = None) -> OutboxStats:
    """Read-only snapshot for metrics and `sinks ship`; a store without the outbox reads as all zeros."""
    if not has_outbox(store):
        return EMPTY_STATS
    db = store.connection
    depth, oldest = db.execute("SELECT COUNT(*), MIN(enqueued_at) FROM outbox WHERE sink = ?", (sink,)).fetchone()
    counters = dict(db.execute("SELECT name, value FROM outbox_counters WHERE sink = ?", (sink,)).fetchall())
    dead = db.execute("SELECT COUNT(*) FROM outbox_dead_letters WHERE sink = ?", (sink,)).fetchone()[0]
    age = max(0.0, (now if now is not None else time.time()) - oldest) if oldest is not None else 0.0
    return OutboxStats(
        depth=int(depth),
        oldest_age_seconds=age,
        shipped_total=int(counters.get("shipped_total", 0)),
        deduplicated_total=int(counters.get("deduplicated_total", 0)),
        dead_lettered_total=int(counters.get("dead_lettered_total", 0)),
        dropped_total=int(counters.get("dropped_total", 0)),
        retried_total=int(counters.get("retried_total", 0)),
        dead_letters=int(dead),
    )


def installed_sinks(store: SqliteStore) -> list[str]:
    """Sinks whose queue this store ever held (what /metrics reports per sink)."""
    if not has_outbox(store):
        return []
    return [str(r[0]) for r in store.connection.execute("SELECT sink FROM outbox_sinks ORDER BY sink")]


def bump_counters(db: sqlite3.Connection, sink: str, deltas: dict[str, int]) -> None:
    db.executemany(
        "INSERT INTO outbox_counters (sink, name, value) VALUES (?, ?, ?)"
        " ON CONFLICT(sink, name) DO UPDATE SET value = value + excluded.value",
        [(sink, name, n) for name, n in deltas.items() if n],
    )


def dumps(doc: Any) -> str:
    """Compact, deterministic enough for content ids (same dict order in, same text out)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)


def _previous_statuses(db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, FindingStatus]:
    out: dict[str, FindingStatus] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows = db.execute(f"SELECT id, status FROM findings WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        out.update((fid, FindingStatus(status)) for fid, status in rows)
    return out


class OutboxWriter:
    """The store write hook. Runs inside the store's transaction (before the rows are written, so a finding's
    previous status is still readable): if the write rolls back, so does the queueing."""

    def __init__(
        self,
        store_path: str,
        sinks: Sequence[OutboxSink],
        registry: RegistrySource = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store_path = store_path
        self.sinks = list(sinks)
        self._registry = registry
        self.clock = clock
        #: set by `Sentinel.ingest` while it records a sweep, so events can name it
        self.sweep_id: int | None = None
        self._full: dict[str, bool] = {}

    def _system(self) -> Callable[[str], System | None]:
        registry = self._registry() if callable(self._registry) else self._registry
        return registry.system if registry is not None else (lambda _sid: None)

    def __call__(self, db: sqlite3.Connection, what: str, items: Sequence[Any]) -> None:
        if not items or not self.sinks:
            return
        ctx = EncodeContext(self.clock(), self._system(), self.sweep_id)
        if what == "findings":
            previous: dict[str, FindingStatus] = {}
            if any(s.needs_previous for s in self.sinks):
                previous = _previous_statuses(db, [f.id for f in items])
            changes = [FindingChange(f, previous.get(f.id)) for f in items if isinstance(f, Finding)]
            for sink in self.sinks:
                self._queue(db, sink, sink.encode_findings(changes, ctx), ctx.now)
        elif what == "observations":
            observations = [o for o in items if isinstance(o, Observation)]
            for sink in self.sinks:
                if sink.wants_observations:
                    self._queue(db, sink, sink.encode_observations(observations, ctx), ctx.now)
        elif what == "advisories":  # `AdvisoryBook.save`: warnings issued, received or withdrawn
            advisories = [a for a in items if isinstance(a, Advisory)]
            for sink in self.sinks:
                self._queue(db, sink, sink.encode_advisories(advisories, ctx), ctx.now)
        elif what == "rekeyed":  # `SqliteStore.claim_identity`: (former id, finding) pairs
            moved = [(str(former), f) for former, f in items if isinstance(f, Finding)]
            for sink in self.sinks:
                state = dict(db.execute("SELECT key, value FROM sink_state WHERE sink = ?", (sink.name,)).fetchall())
                self._queue(db, sink, sink.encode_rekeyed(moved, ctx, state), ctx.now)

    def _queue(self, db: sqlite3.Connection, sink: OutboxSink, entries: Iterable[Entry], now: float) -> None:
        current: list[tuple[Any, ...]] = []
        droppable: list[tuple[Any, ...]] = []
        for e in entries:
            row = (sink.name, e.stream, e.doc_id, e.body, now, int(e.coalesce))
            (droppable if e.droppable else current).append(row)
        insert = "INTO outbox (sink, stream, doc_id, body, enqueued_at, coalesced) VALUES (?,?,?,?,?,?)"
        if current:
            # OR REPLACE on the partial unique index: an unshipped older state of the same id is superseded
            db.executemany("INSERT OR REPLACE " + insert, current)
        if droppable:
            reason = self._full_reason(db, sink, len(droppable))
            if reason is None:
                db.executemany("INSERT " + insert, droppable)
            else:
                bump_counters(db, sink.name, {"dropped_total": len(droppable)})
                log.warning(
                    "%s outbox full (%s): dropped %d %s; finding state is still queued",
                    sink.name,
                    reason,
                    len(droppable),
                    sink.droppable_what,
                )

    def _full_reason(self, db: sqlite3.Connection, sink: OutboxSink, incoming: int) -> str | None:
        limits = sink.options
        depth = int(db.execute("SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink.name,)).fetchone()[0])
        reason: str | None = None
        if depth + incoming > limits.outbox_max_items:
            reason = f"{depth} queued, limit outbox_max_items={limits.outbox_max_items}"
        elif self.store_path != ":memory:" and limits.outbox_min_free_bytes:
            free = shutil.disk_usage(Path(self.store_path).resolve().parent).free
            if free < limits.outbox_min_free_bytes:
                reason = f"{free} bytes free, floor outbox_min_free_bytes={limits.outbox_min_free_bytes}"
        if reason is None and self._full.get(sink.name):
            log.warning("%s outbox accepting documents again (%d queued)", sink.name, depth)
        self._full[sink.name] = reason is not None
        return reason


def install_sinks(store: SqliteStore, sinks: Sequence[OutboxSink], registry: RegistrySource = None) -> OutboxWriter:
    """Queue every findings/observations write for these sinks (one hook for all), and record them as installed."""
    store.install(SINK_OUTBOX)
    if sinks:
        with store.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO outbox_sinks (sink, installed_at) VALUES (?, ?)",
                [(s.name, time.time()) for s in sinks],
            )
    writer = OutboxWriter(store.path, sinks, registry)
    store.add_write_hook(writer)
    return writer
