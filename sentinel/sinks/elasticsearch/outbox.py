"""The transactional outbox: findings and observations are queued in the very transaction that records them.

`install_outbox(store, settings)` registers a write hook on the store. Each queued row carries a
deterministic document id fixed at enqueue time, so however often a row is re-sent (retries, a crash
between Elasticsearch's answer and our delete), Elasticsearch ends up with it exactly once:

* stream `latest`: ``_id`` = finding id, ``version_type=external`` with ``version`` = the row's sequence
  number, so an older or repeated state is refused with 409 and a newer one always wins;
* streams `history` and `observations`: ``_id`` = sha256 of the document, ``op_type=create`` (409 if present).

The queue is bounded by `outbox_max_items` and `outbox_min_free_bytes`. When full, history and observation
documents are dropped (counted and logged); latest-state rows are never dropped: they are coalesced per
finding, so there are never more of them than findings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentinel.models import Finding, Observation
from sentinel.registry.models import Registry, System
from sentinel.sinks.elasticsearch.documents import finding_document, observation_document, observer
from sentinel.sinks.elasticsearch.schema import COMPONENT, ensure_schema
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings, elasticsearch_settings
from sentinel.store import SqliteStore

if TYPE_CHECKING:
    from sentinel.config.settings import Settings

log = logging.getLogger(__name__)

LATEST, HISTORY, OBSERVATIONS = "latest", "history", "observations"
COUNTERS = ("shipped_total", "deduplicated_total", "dead_lettered_total", "dropped_total", "retried_total")

RegistrySource = Registry | Callable[[], Registry | None] | None


@dataclass(frozen=True)
class OutboxStats:
    """What the outbox looks like now; counters are totals since the store was created.

    depth: rows waiting; oldest_age_seconds: age of the oldest waiting row (0 when empty);
    shipped_total: documents Elasticsearch stored; deduplicated_total: answered 409 (already there);
    dead_lettered_total: refused with 400/404 and moved to `es_dead_letters`; dropped_total: not queued
    because the queue was full or the disk low; retried_total: 429/5xx/unreachable attempts put back.
    """

    depth: int
    oldest_age_seconds: float
    shipped_total: int
    deduplicated_total: int
    dead_lettered_total: int
    dropped_total: int
    retried_total: int
    dead_letters: int


def outbox_stats(store: SqliteStore, now: float | None = None) -> OutboxStats:
    """Read-only snapshot for metrics and `sentinel es ship`; cheap enough to call at every scrape.

    A store without the outbox tables (Elasticsearch never configured) reads as empty, all zeros.
    """
    if store.schema_version(COMPONENT) == 0:
        return OutboxStats(0, 0.0, 0, 0, 0, 0, 0, 0)
    db = store.connection
    depth, oldest = db.execute("SELECT COUNT(*), MIN(enqueued_at) FROM es_outbox").fetchone()
    counters = dict(db.execute("SELECT name, value FROM es_outbox_counters").fetchall())
    dead = db.execute("SELECT COUNT(*) FROM es_dead_letters").fetchone()[0]
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


def bump_counters(db: sqlite3.Connection, deltas: dict[str, int]) -> None:
    db.executemany(
        "INSERT INTO es_outbox_counters (name, value) VALUES (?, ?)"
        " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        [(name, n) for name, n in deltas.items() if n],
    )


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)


def _hash_id(stream: str, body: str) -> str:
    return hashlib.sha256(f"{stream}\x1f{body}".encode()).hexdigest()


class OutboxWriter:
    """The store write hook. Runs inside the store's transaction: if the write rolls back, so does the queueing."""

    def __init__(
        self,
        store_path: str,
        es: ElasticsearchSettings,
        registry: RegistrySource = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store_path = store_path
        self.es = es
        self._registry = registry
        self.clock = clock
        self.observer = observer()
        self._full = False

    def _system(self) -> Callable[[str], System | None]:
        registry = self._registry() if callable(self._registry) else self._registry
        return registry.system if registry is not None else (lambda _sid: None)

    def __call__(self, db: sqlite3.Connection, what: str, items: Sequence[Any]) -> None:
        if not items:
            return
        now = self.clock()
        system = self._system()
        latest: list[tuple[str, str, str, float]] = []
        droppable: list[tuple[str, str, str, float]] = []
        if what == "findings":
            for finding in items:
                assert isinstance(finding, Finding)
                doc = finding_document(finding, system(finding.system_id), self.observer)
                latest.append((LATEST, finding.id, _dumps(doc), now))
                # History: a snapshot stamped with when it was recorded (acks do not move last_seen).
                doc["@timestamp"] = doc["event"]["created"] = _iso_now(now)
                body = _dumps(doc)
                droppable.append((HISTORY, _hash_id(HISTORY, body), body, now))
        elif what == "observations" and self.es.ship_observations:
            for obs in items:
                assert isinstance(obs, Observation)
                body = _dumps(observation_document(obs, system(obs.system_id), self.observer))
                droppable.append((OBSERVATIONS, _hash_id(OBSERVATIONS, body), body, now))
        if latest:
            # Coalesce: an unshipped older state of the same finding is superseded, never sent.
            db.executemany("DELETE FROM es_outbox WHERE stream = 'latest' AND doc_id = ?", [(r[1],) for r in latest])
            db.executemany("INSERT INTO es_outbox (stream, doc_id, body, enqueued_at) VALUES (?,?,?,?)", latest)
        if droppable:
            reason = self._full_reason(db, len(droppable))
            if reason is None:
                db.executemany("INSERT INTO es_outbox (stream, doc_id, body, enqueued_at) VALUES (?,?,?,?)", droppable)
            else:
                bump_counters(db, {"dropped_total": len(droppable)})
                log.warning(
                    "elasticsearch outbox full (%s): dropped %d history/observation documents; "
                    "finding state is still queued",
                    reason,
                    len(droppable),
                )

    def _full_reason(self, db: sqlite3.Connection, incoming: int) -> str | None:
        depth = int(db.execute("SELECT COUNT(*) FROM es_outbox").fetchone()[0])
        reason: str | None = None
        if depth + incoming > self.es.outbox_max_items:
            reason = f"{depth} queued, limit outbox_max_items={self.es.outbox_max_items}"
        elif self.store_path != ":memory:" and self.es.outbox_min_free_bytes:
            free = shutil.disk_usage(Path(self.store_path).resolve().parent).free
            if free < self.es.outbox_min_free_bytes:
                reason = f"{free} bytes free, floor outbox_min_free_bytes={self.es.outbox_min_free_bytes}"
        if reason is None and self._full:
            log.warning("elasticsearch outbox accepting documents again (%d queued)", depth)
        self._full = reason is not None
        return reason


def _iso_now(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat()


def install_outbox(store: SqliteStore, settings: Settings, registry: RegistrySource = None) -> OutboxWriter | None:
    """Queue every findings/observations write for Elasticsearch, if Elasticsearch is configured.

    `registry` (a Registry or a zero-argument callable returning one) adds system metadata to documents.
    Returns the installed writer, or None when Elasticsearch is not configured (nothing is queued).
    """
    es = elasticsearch_settings(settings)
    if es is None:
        return None
    ensure_schema(store)
    writer = OutboxWriter(store.path, es, registry)
    store.add_write_hook(writer)
    return writer
