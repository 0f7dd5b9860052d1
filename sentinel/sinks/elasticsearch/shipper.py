"""Drain the outbox into Elasticsearch with `streaming_bulk`, classifying every item ourselves.

2xx: stored. 409: already there (a resend after a crash or retry): done, counted as deduplicated.
429, 5xx, no answer: kept, retried after exponential backoff with jitter. 400/404: moved to the dead-letter
table with the reason. Each batch's outcome is committed in one transaction, so succeeded rows are
deleted before anything is retried, and a crash resends at most one batch (which then answers 409).

An outage is logged as state changes, not per attempt (an outage used to write ~1,550 warnings a minute):
once when the cluster stops answering, a summary every `OUTAGE_SUMMARY_EVERY` seconds (documents queued,
age of the oldest), and once when it answers again. The outage is kept in the store (`es_outage`), because
the monitor builds a new Shipper for every drain.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from elastic_transport import TransportError
from elasticsearch import Elasticsearch
from elasticsearch.helpers import streaming_bulk

from sentinel.sinks.elasticsearch.outbox import HISTORY, LATEST, bump_counters
from sentinel.sinks.elasticsearch.schema import ensure_schema
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings, mask_url
from sentinel.sinks.elasticsearch.templates import IndexNames
from sentinel.store import SqliteStore

log = logging.getLogger(__name__)

MAX_REASON = 500
#: seconds between two log lines about the same ongoing outage
OUTAGE_SUMMARY_EVERY = 60.0


@dataclass
class ShipReport:
    shipped: int = 0
    deduplicated: int = 0
    dead_lettered: int = 0
    retried: int = 0
    remaining: int = 0
    batches: int = 0
    last_error: str | None = None  # the most recent retryable failure, for the operator
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def drained(self) -> bool:
        return self.remaining == 0


@dataclass(frozen=True)
class _Row:
    seq: int
    stream: str
    doc_id: str
    body: str
    attempts: int


#: Statuses that mean "this document is wrong": retrying would only fail again.
DEAD_LETTER_STATUSES = (400, 404)


def classify(status: int) -> str:
    """'done', 'duplicate', 'retry' or 'dead' for one bulk item status (0: no usable answer).

    Everything that is not the document's fault is retried: 429, 5xx, but also 401/403 (credentials,
    fixed by the operator) and 413, so a misconfiguration never empties the queue into dead letters.
    """
    if 200 <= status < 300:
        return "done"
    if status == 409:
        return "duplicate"
    if status in DEAD_LETTER_STATUSES:
        return "dead"
    return "retry"


class Shipper:
    def __init__(
        self,
        store: SqliteStore,
        client: Elasticsearch,
        es: ElasticsearchSettings,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        ensure_schema(store)
        self.store = store
        self.client = client
        self.es = es
        self.names = IndexNames(es.index_prefix)
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter
        self._stream_index = {LATEST: self.names.latest, HISTORY: self.names.history}

    def backoff(self, attempts: int, jitter: float | None = None) -> float:
        """Exponential backoff with 'equal jitter': between half and all of min(cap, base * 2^(n-1))."""
        ceiling = min(self.es.backoff_max, self.es.backoff_initial * (2 ** max(attempts - 1, 0)))
        draw = self.jitter() if jitter is None else jitter
        return float(ceiling / 2 + draw * ceiling / 2)

    # -- reading the queue ----------------------------------------------------------------------
    def _due(self, now: float) -> list[_Row]:
        rows = self.store.connection.execute(
            "SELECT seq, stream, doc_id, body, attempts FROM es_outbox WHERE next_attempt_at <= ? ORDER BY seq LIMIT ?",
            (now, self.es.batch_size),
        ).fetchall()
        return [_Row(*r) for r in rows]

    def _next_due(self) -> float | None:
        row = self.store.connection.execute("SELECT MIN(next_attempt_at) FROM es_outbox").fetchone()
        return float(row[0]) if row[0] is not None else None

    def _action(self, row: _Row) -> dict[str, Any]:
        index = self._stream_index.get(row.stream, self.names.observations)
        if row.stream == LATEST:
            # External version = queue sequence number: later states win, repeats answer 409.
            return {
                "_op_type": "index",
                "_index": index,
                "_id": row.doc_id,
                "version": row.seq,
                "version_type": "external",
                "_source": row.body,
            }
        return {"_op_type": "create", "_index": index, "_id": row.doc_id, "_source": row.body}

    # -- outage state -----------------------------------------------------------------------------
    def _outage(self) -> tuple[float, str, float] | None:
        row = self.store.connection.execute("SELECT since, reason, reported_at FROM es_outage WHERE id = 1").fetchone()
        return (float(row[0]), str(row[1]), float(row[2])) if row else None

    def outage_ongoing(self) -> bool:
        return self._outage() is not None

    def _queue(self, now: float) -> tuple[int, float]:
        depth, oldest = self.store.connection.execute("SELECT COUNT(*), MIN(enqueued_at) FROM es_outbox").fetchone()
        return int(depth), max(0.0, now - float(oldest)) if oldest is not None else 0.0

    def _unreachable(self, reason: str, now: float) -> None:
        outage = self._outage()
        if outage is None:
            log.warning("Elasticsearch became unreachable: %s; documents stay queued in the outbox", reason)
            with self.store.transaction() as db:
                db.execute(
                    "INSERT OR REPLACE INTO es_outage (id, since, reason, reported_at) VALUES (1, ?, ?, ?)",
                    (now, reason, now),
                )
            return
        since, _, reported_at = outage
        if now - reported_at < OUTAGE_SUMMARY_EVERY:
            return
        depth, oldest = self._queue(now)
        log.warning(
            "Elasticsearch unreachable for %s: %d documents queued, the oldest %s old (%s)",
            _duration(now - since),
            depth,
            _duration(oldest),
            reason,
        )
        with self.store.transaction() as db:
            db.execute("UPDATE es_outage SET reason = ?, reported_at = ? WHERE id = 1", (reason, now))

    def _reachable(self, now: float) -> None:
        outage = self._outage()
        if outage is None:
            return
        depth, _ = self._queue(now)
        # WARNING like the outage itself, so a log filtered to warnings also shows that it ended
        log.warning(
            "Elasticsearch reachable again after %s; shipping %d queued documents", _duration(now - outage[0]), depth
        )
        with self.store.transaction() as db:
            db.execute("DELETE FROM es_outage")

    # -- one batch ------------------------------------------------------------------------------
    def _send(self, rows: list[_Row]) -> Iterator[tuple[int, str]]:
        """(status, reason) per row, in order; stops early if the cluster cannot be reached."""
        results = streaming_bulk(
            self.client,
            (self._action(r) for r in rows),
            chunk_size=self.es.batch_size,
            max_chunk_bytes=20 * 1024 * 1024,
            raise_on_error=False,
            raise_on_exception=False,
            max_retries=0,
            yield_ok=True,
        )
        for ok, item in results:
            info = next(iter(item.values()))
            status = int(info.get("status") or 0)
            error = info.get("error")
            if isinstance(error, dict):
                reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
            else:
                reason = str(error or "")
            if not ok and 200 <= status < 300:
                # e.g. a 200 from something that is not Elasticsearch (no product header): not stored.
                status = 0
            yield status, reason[:MAX_REASON]

    def ship_batch(self, rows: list[_Row], report: ShipReport) -> None:
        outcomes: list[tuple[int, str]] = []
        unreachable: str | None = None
        try:
            for outcome in self._send(rows):
                outcomes.append(outcome)
        except TransportError as exc:  # refused, reset, timed out: no answer for the rest of the batch
            unreachable = f"{mask_url(self.es.url)} unreachable: {exc.message}"[:MAX_REASON]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # an answer that is not a bulk response
            unreachable = f"{mask_url(self.es.url)} sent a malformed bulk response: {exc!r}"[:MAX_REASON]
        now = self.clock()
        # One jitter draw per batch: rows that failed together stay together, so recovery ships full batches.
        draw = self.jitter()
        done: list[tuple[int]] = []
        dead: list[tuple[Any, ...]] = []
        retry: list[tuple[Any, ...]] = []
        deltas = {"shipped_total": 0, "deduplicated_total": 0, "dead_lettered_total": 0, "retried_total": 0}
        for position, row in enumerate(rows):
            status, reason = outcomes[position] if position < len(outcomes) else (0, unreachable or "no answer")
            report.statuses[status] = report.statuses.get(status, 0) + 1
            verdict = classify(status)
            if verdict in ("done", "duplicate"):
                done.append((row.seq,))
                key = "shipped_total" if verdict == "done" else "deduplicated_total"
                deltas[key] += 1
            elif verdict == "dead":
                dead.append((row.seq, row.stream, row.doc_id, row.body, now, status, reason or "rejected", row.seq))
                deltas["dead_lettered_total"] += 1
            else:
                attempts = row.attempts + 1
                retry.append((attempts, now + self.backoff(attempts, draw), f"{status}: {reason}", row.seq))
                deltas["retried_total"] += 1
                report.last_error = unreachable or f"status {status}: {reason}"
        # before this batch's outcome is committed, so a recovery line counts the documents it is about to ship
        if unreachable is not None and not outcomes:
            self._unreachable(unreachable, now)
        elif outcomes:
            self._reachable(now)
        with self.store.transaction() as db:
            db.executemany("DELETE FROM es_outbox WHERE seq = ?", done)
            if dead:
                db.executemany(
                    "INSERT OR REPLACE INTO es_dead_letters"
                    " (seq, stream, doc_id, body, enqueued_at, dead_at, status, reason)"
                    " SELECT ?, ?, ?, ?, enqueued_at, ?, ?, ? FROM es_outbox WHERE seq = ?",
                    dead,
                )
                db.executemany("DELETE FROM es_outbox WHERE seq = ?", [(d[0],) for d in dead])
            db.executemany(
                "UPDATE es_outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE seq = ?", retry
            )
            bump_counters(db, deltas)
        for seq, stream, doc_id, _body, _at, code, why, _seq in dead:
            log.error(
                "elasticsearch refused %s document %s (outbox #%d, status %d): %s", stream, doc_id, seq, code, why
            )
        report.shipped += deltas["shipped_total"]
        report.deduplicated += deltas["deduplicated_total"]
        report.dead_lettered += deltas["dead_lettered_total"]
        report.retried += deltas["retried_total"]
        report.batches += 1

    # -- draining -------------------------------------------------------------------------------
    def drain(self, timeout: float | None = None, stop: Callable[[], bool] | None = None) -> ShipReport:
        """Ship until the outbox is empty, `timeout` seconds pass (default `ship_timeout`), or `stop()` is true."""
        report = ShipReport()
        deadline = self.clock() + (self.es.ship_timeout if timeout is None else timeout)
        while stop is None or not stop():
            now = self.clock()
            if report.batches and now >= deadline:
                break
            rows = self._due(now)
            if rows:
                self.ship_batch(rows, report)
                continue
            next_due = self._next_due()
            if next_due is None or now >= deadline:
                break
            self.sleep(max(0.0, min(next_due, deadline) - now))
            if self.clock() >= deadline and next_due > deadline:
                break
        report.remaining = int(self.store.connection.execute("SELECT COUNT(*) FROM es_outbox").fetchone()[0])
        # during an outage the outage lines say it all; this line is for other retryable failures (429, 401 ...)
        if report.remaining and report.last_error and not self.outage_ongoing():
            log.warning(
                "elasticsearch shipping incomplete: %d documents kept in the outbox (%s)",
                report.remaining,
                report.last_error,
            )
        return report


def _duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h': how long, for people."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
