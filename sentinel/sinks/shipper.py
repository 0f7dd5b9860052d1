"""The one shipper: drains a sink's outbox rows with the sink's `deliver`, classifying every row itself.

done (2xx): deleted. duplicate (409, the peer already had it: a resend after a crash or retry): deleted, counted
as deduplicated. dead (the row is wrong, e.g. 400/404): moved to `outbox_dead_letters` with the reason. Anything
else (429, 5xx, no answer): kept and retried after exponential backoff with equal jitter. Each batch's outcome is
committed in one transaction, so rows that succeeded are deleted before anything is retried, and a crash resends
at most one batch (which the peer then recognises by its ids).

An outage is logged as state changes, not per attempt: once when the sink stops answering, a summary every
`OUTAGE_SUMMARY_EVERY` seconds (rows queued, age of the oldest), and once when it answers again. The outage is kept
in the store (`outbox_outage`), because `sentinel run` builds a new Shipper for every drain.

A lease in the store (`outbox_lease`) lets only one shipper drain a sink at a time (a one-shot command's flush and
the monitor's loop never send the same rows side by side); a lease whose process died is taken over at once.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sentinel.sinks.base import Delivery, OutboxSink, Queued
from sentinel.sinks.outbox import SINK_OUTBOX, bump_counters
from sentinel.store import SqliteStore

log = logging.getLogger("sentinel.sinks.shipper")

MAX_REASON = 500
#: seconds between two log lines about the same ongoing outage
OUTAGE_SUMMARY_EVERY = 60.0
#: a lease not renewed for this long (a hung process) is taken over even if its process lives
LEASE_SECONDS = 120.0


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
    busy: bool = False  # another shipper holds this sink's lease: nothing was sent by this one

    @property
    def drained(self) -> bool:
        return self.remaining == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h': how long, for people."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Shipper:
    def __init__(
        self,
        store: SqliteStore,
        sink: OutboxSink,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        store.install(SINK_OUTBOX)
        self.store = store
        self.sink = sink
        self.policy = sink.options
        self.clock = clock
        self.sleep = sleep
        self.jitter = jitter
        self._owner = f"{os.getpid()}:{uuid.uuid4().hex}"

    def backoff(self, attempts: int, jitter: float | None = None) -> float:
        """Exponential backoff with 'equal jitter': between half and all of min(cap, base * 2^(n-1))."""
        ceiling = min(self.policy.backoff_max, self.policy.backoff_initial * (2 ** max(attempts - 1, 0)))
        draw = self.jitter() if jitter is None else jitter
        return float(ceiling / 2 + draw * ceiling / 2)

    # -- the lease --------------------------------------------------------------------------------
    def _acquire(self, now: float) -> bool:
        with self.store.transaction() as db:
            row = db.execute("SELECT owner, pid, until FROM outbox_lease WHERE sink = ?", (self.sink.name,)).fetchone()
            if row is not None and row[0] != self._owner and float(row[2]) > now and _alive(int(row[1])):
                return False
            db.execute(
                "INSERT OR REPLACE INTO outbox_lease (sink, owner, pid, until) VALUES (?, ?, ?, ?)",
                (self.sink.name, self._owner, os.getpid(), now + LEASE_SECONDS),
            )
        return True

    def _release(self) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM outbox_lease WHERE sink = ? AND owner = ?", (self.sink.name, self._owner))

    # -- reading the queue ------------------------------------------------------------------------
    def _due(self, now: float) -> list[Queued]:
        rows = self.store.connection.execute(
            "SELECT seq, stream, doc_id, body, attempts FROM outbox WHERE sink = ? AND next_attempt_at <= ?"
            " ORDER BY seq LIMIT ?",
            (self.sink.name, now, self.policy.batch_size),
        ).fetchall()
        return [Queued(*r) for r in rows]

    def _next_due(self) -> float | None:
        row = self.store.connection.execute(
            "SELECT MIN(next_attempt_at) FROM outbox WHERE sink = ?", (self.sink.name,)
        ).fetchone()
        return float(row[0]) if row[0] is not None else None

    def _queue(self, now: float) -> tuple[int, float]:
        depth, oldest = self.store.connection.execute(
            "SELECT COUNT(*), MIN(enqueued_at) FROM outbox WHERE sink = ?", (self.sink.name,)
        ).fetchone()
        return int(depth), max(0.0, now - float(oldest)) if oldest is not None else 0.0

    def _state(self) -> dict[str, str]:
        rows = self.store.connection.execute("SELECT key, value FROM sink_state WHERE sink = ?", (self.sink.name,))
        return {str(k): str(v) for k, v in rows}

    # -- outage state -----------------------------------------------------------------------------
    def _outage(self) -> tuple[float, str, float] | None:
        row = self.store.connection.execute(
            "SELECT since, reason, reported_at FROM outbox_outage WHERE sink = ?", (self.sink.name,)
        ).fetchone()
        return (float(row[0]), str(row[1]), float(row[2])) if row else None

    def outage_ongoing(self) -> bool:
        return self._outage() is not None

    def _unreachable(self, reason: str, now: float) -> None:
        title = self.sink.title
        outage = self._outage()
        if outage is None:
            log.warning("%s became unreachable: %s; documents stay queued in the outbox", title, reason)
            with self.store.transaction() as db:
                db.execute(
                    "INSERT OR REPLACE INTO outbox_outage (sink, since, reason, reported_at) VALUES (?, ?, ?, ?)",
                    (self.sink.name, now, reason, now),
                )
            return
        since, _, reported_at = outage
        if now - reported_at < OUTAGE_SUMMARY_EVERY:
            return
        depth, oldest = self._queue(now)
        log.warning(
            "%s unreachable for %s: %d documents queued, the oldest %s old (%s)",
            title,
            duration(now - since),
            depth,
            duration(oldest),
            reason,
        )
        with self.store.transaction() as db:
            db.execute(
                "UPDATE outbox_outage SET reason = ?, reported_at = ? WHERE sink = ?", (reason, now, self.sink.name)
            )

    def _reachable(self, now: float) -> None:
        outage = self._outage()
        if outage is None:
            return
        depth, _ = self._queue(now)
        # WARNING like the outage itself, so a log filtered to warnings also shows that it ended
        log.warning(
            "%s reachable again after %s; shipping %d queued documents",
            self.sink.title,
            duration(now - outage[0]),
            depth,
        )
        with self.store.transaction() as db:
            db.execute("DELETE FROM outbox_outage WHERE sink = ?", (self.sink.name,))

    # -- one batch --------------------------------------------------------------------------------
    def _deliver(self, rows: list[Queued]) -> Delivery:
        try:
            return self.sink.deliver(rows, self._state())
        except Exception as exc:  # a sink bug must not lose rows: they are retried, and the reason is kept
            log.exception("%s delivery failed", self.sink.name)
            return Delivery(unreachable=f"{self.sink.describe()}: {type(exc).__name__}: {exc}"[:MAX_REASON])

    def ship_batch(self, rows: list[Queued], report: ShipReport) -> None:
        result = self._deliver(rows)
        outcomes = result.statuses
        unreachable = result.unreachable[:MAX_REASON] if result.unreachable else None
        now = self.clock()
        # One jitter draw per batch: rows that failed together stay together, so recovery ships full batches.
        draw = self.jitter()
        done: list[tuple[int]] = []
        dead: list[tuple[Any, ...]] = []
        retry: list[tuple[Any, ...]] = []
        deltas = {"shipped_total": 0, "deduplicated_total": 0, "dead_lettered_total": 0, "retried_total": 0}
        for position, row in enumerate(rows):
            status, reason = outcomes[position] if position < len(outcomes) else (0, unreachable or "no answer")
            reason = reason[:MAX_REASON]
            report.statuses[status] = report.statuses.get(status, 0) + 1
            verdict = self.sink.classify(status)
            if verdict in ("done", "duplicate"):
                done.append((row.seq,))
                deltas["shipped_total" if verdict == "done" else "deduplicated_total"] += 1
            elif verdict == "dead":
                dead.append((row.seq, now, status, reason or "rejected", row.seq))
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
            db.executemany("DELETE FROM outbox WHERE seq = ?", done)
            if dead:
                db.executemany(
                    "INSERT OR REPLACE INTO outbox_dead_letters"
                    " (seq, sink, stream, doc_id, body, enqueued_at, dead_at, status, reason)"
                    " SELECT seq, sink, stream, doc_id, body, enqueued_at, ?, ?, ? FROM outbox WHERE seq = ?",
                    [d[1:] for d in dead],
                )
                db.executemany("DELETE FROM outbox WHERE seq = ?", [(d[0],) for d in dead])
            db.executemany("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE seq = ?", retry)
            self._apply_state(db, result, now)
            bump_counters(db, self.sink.name, deltas)
            db.execute(
                "UPDATE outbox_lease SET until = ? WHERE sink = ? AND owner = ?",
                (now + LEASE_SECONDS, self.sink.name, self._owner),
            )
        by_seq = {r.seq: r for r in rows}
        for seq, _at, code, why, _seq in dead:
            row = by_seq[seq]
            log.error(
                "%s refused %s document %s (outbox #%d, status %d): %s", self.sink.name, row.stream, row.doc_id, seq,
                code, why,
            )  # fmt: skip
        report.shipped += deltas["shipped_total"]
        report.deduplicated += deltas["deduplicated_total"]
        report.dead_lettered += deltas["dead_lettered_total"]
        report.retried += deltas["retried_total"]
        report.batches += 1

    def _apply_state(self, db: Any, result: Delivery, now: float) -> None:
        gone = [(self.sink.name, k) for k, v in result.state.items() if v is None]
        kept = [(self.sink.name, k, v, now) for k, v in result.state.items() if v is not None]
        db.executemany("DELETE FROM sink_state WHERE sink = ? AND key = ?", gone)
        db.executemany("INSERT OR REPLACE INTO sink_state (sink, key, value, updated_at) VALUES (?, ?, ?, ?)", kept)

    def _maintain(self, report: ShipReport) -> None:
        """The sink's periodic work (e.g. re-sending active alerts), when its queue is empty."""
        now = self.clock()
        try:
            result = self.sink.maintain(self._state(), now)
        except Exception as exc:
            log.exception("%s maintenance failed", self.sink.name)
            report.last_error = f"{type(exc).__name__}: {exc}"[:MAX_REASON]
            return
        if result is None:
            return
        if result.unreachable is not None:
            self._unreachable(result.unreachable[:MAX_REASON], now)
            report.last_error = result.unreachable[:MAX_REASON]
            return
        self._reachable(now)
        with self.store.transaction() as db:
            self._apply_state(db, result, now)

    # -- draining ---------------------------------------------------------------------------------
    def drain(
        self, timeout: float | None = None, stop: Callable[[], bool] | None = None, wait: bool = True
    ) -> ShipReport:
        """Ship until the queue is empty, `timeout` seconds pass (default `ship_timeout`), or `stop()` is true.
        `wait=False`: ship what is due now and return instead of sleeping through a backoff (the flush after an
        ingest: a dead sink costs one attempt, and its rows wait for the next shipper)."""
        report = ShipReport()
        start = self.clock()
        if not self._acquire(start):
            report.busy = True
            report.remaining = self._queue(start)[0]
            return report
        try:
            self._drain(report, start + (self.policy.ship_timeout if timeout is None else timeout), stop, wait)
        finally:
            self._release()
        report.remaining = self._queue(self.clock())[0]
        # during an outage the outage lines say it all; this line is for other retryable failures (429, 401 ...)
        if report.remaining and report.last_error and not self.outage_ongoing():
            log.warning(
                "%s shipping incomplete: %d documents kept in the outbox (%s)",
                self.sink.name,
                report.remaining,
                report.last_error,
            )
        return report

    def _drain(self, report: ShipReport, deadline: float, stop: Callable[[], bool] | None, wait: bool) -> None:
        while stop is None or not stop():
            now = self.clock()
            if report.batches and now >= deadline:
                return
            rows = self._due(now)
            if rows:
                self.ship_batch(rows, report)
                continue
            next_due = self._next_due()
            if next_due is None:
                self._maintain(report)
                return
            if now >= deadline or not wait:
                return
            self.sleep(max(0.0, min(next_due, deadline) - now))
            if self.clock() >= deadline and next_due > deadline:
                return
