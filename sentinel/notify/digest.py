"""Work out what each owner must be told: events on their own systems that were not yet sent to them.

An *event* is a finding state worth telling (new, reopened, resolved); its key includes the moment
the state began, so the same state is never announced twice and a later regression is announced
again. The ledger of what was sent lives in the store (`notify_sent`), so restarts resend nothing.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sentinel.models import Finding, FindingStatus, Severity
from sentinel.registry.models import Registry
from sentinel.store.schema import SchemaComponent, migrate

NOTIFY_SCHEMA: list[list[str]] = [
    [
        """CREATE TABLE notify_sent (
            recipient TEXT NOT NULL,
            event_key TEXT NOT NULL,
            finding_id TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            channel TEXT NOT NULL,
            PRIMARY KEY (recipient, event_key)
        )""",
        "CREATE INDEX notify_sent_time ON notify_sent (recipient, sent_at)",
        """CREATE TABLE notify_digests (
            recipient TEXT PRIMARY KEY,
            last_digest_at TEXT NOT NULL
        )""",
    ],
]


#: the store schema component of the notification ledger (passed to the store by the composition root)
NOTIFY_COMPONENT = SchemaComponent("notify", NOTIFY_SCHEMA)


@dataclass(frozen=True)
class Event:
    kind: str  # new | reopened | resolved | overdue
    finding: Finding

    @property
    def key(self) -> str:
        f = self.finding
        since = {
            "new": f.first_seen,
            "reopened": f.last_seen if f.regression else f.first_seen,
            "resolved": f.resolved_at or f.last_seen,
        }.get(self.kind, f.first_seen)
        return f"{self.kind}:{f.id}:{since.isoformat()}"


@dataclass(frozen=True)
class Recipient:
    """Who receives a digest: an owner's e-mail, or a webhook (department-scoped or SOC-wide)."""

    key: str  # "mail:ops@x" or "hook:<index>"
    departments: frozenset[str] | None  # None: every department (the SOC's webhook)
    system_ids: frozenset[str]


@dataclass
class Digest:
    recipient: Recipient
    events: list[Event] = field(default_factory=list)
    immediate: bool = False

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for e in self.events:
            out[e.kind] += 1
        return dict(out)


def recipients(registry: Registry, webhook_departments: list[str | None]) -> list[Recipient]:
    by_mail: dict[str, set[str]] = defaultdict(set)
    by_dept: dict[str, set[str]] = defaultdict(set)
    for s in registry.systems:
        if s.owner.email:
            by_mail[s.owner.email.lower()].add(s.id)
        by_dept[s.owner.department].add(s.id)
    out = [Recipient(f"mail:{m}", None, frozenset(ids)) for m, ids in sorted(by_mail.items())]
    for i, dept in enumerate(webhook_departments):
        ids = by_dept.get(dept, set()) if dept is not None else {s.id for s in registry.systems}
        out.append(Recipient(f"hook:{i}", frozenset([dept]) if dept else None, frozenset(ids)))
    return out


def events_for(findings: list[Finding], overdue: frozenset[str] = frozenset()) -> list[Event]:
    """`overdue`: ids of active findings past their SLA; each is escalated once (its key holds first_seen)."""
    events = []
    for f in findings:
        if f.status == FindingStatus.RESOLVED:
            events.append(Event("resolved", f))
        elif f.status.is_active:
            events.append(Event("reopened" if f.regression else "new", f))
            if f.id in overdue:
                events.append(Event("overdue", f))
    return events


class Ledger:
    """What was sent to whom; all reads and writes of the notify tables."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        # a store opened without the component (a tool, a test) gets the ledger tables through the store's loop
        migrate(db, [NOTIFY_COMPONENT], "store")

    def sent_keys(self, recipient: str) -> set[str]:
        rows = self.db.execute("SELECT event_key FROM notify_sent WHERE recipient = ?", (recipient,))
        return {r[0] for r in rows}

    def told_findings(self, recipient: str) -> set[str]:
        """Findings this recipient was told about (a resolution is only news to those who heard of the problem)."""
        rows = self.db.execute(
            "SELECT DISTINCT finding_id FROM notify_sent WHERE recipient = ? AND event_key NOT LIKE 'resolved:%'",
            (recipient,),
        )
        return {r[0] for r in rows}

    def sent_in_last_hour(self, recipient: str, now: datetime) -> int:
        since = (now - timedelta(hours=1)).isoformat()
        row = self.db.execute(
            "SELECT COUNT(DISTINCT sent_at) FROM notify_sent WHERE recipient = ? AND sent_at >= ?", (recipient, since)
        ).fetchone()
        return int(row[0])

    def last_digest(self, recipient: str) -> datetime | None:
        row = self.db.execute("SELECT last_digest_at FROM notify_digests WHERE recipient = ?", (recipient,)).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def record(self, digest: Digest, channel: str, now: datetime) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO notify_sent (recipient, event_key, finding_id, sent_at, channel) VALUES (?,?,?,?,?)",
            [(digest.recipient.key, e.key, e.finding.id, now.isoformat(), channel) for e in digest.events],
        )
        if not digest.immediate:
            self.db.execute(
                "INSERT OR REPLACE INTO notify_digests (recipient, last_digest_at) VALUES (?, ?)",
                (digest.recipient.key, now.isoformat()),
            )


def due_digests(
    ledger: Ledger,
    targets: list[Recipient],
    findings: list[Finding],
    now: datetime,
    immediate_severity: Severity,
    digest_every: timedelta,
    max_per_hour: int,
    overdue: frozenset[str] = frozenset(),
) -> list[Digest]:
    """The digests to send now: immediate ones for severe events, periodic ones for the rest."""
    by_system: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_system[f.system_id].append(f)
    due: list[Digest] = []
    for r in targets:
        sent = ledger.sent_keys(r.key)
        own = [f for sid in sorted(r.system_ids) for f in by_system.get(sid, [])]
        told = ledger.told_findings(r.key)
        pending = [
            e for e in events_for(own, overdue) if e.key not in sent and (e.kind != "resolved" or e.finding.id in told)
        ]
        if not pending:
            continue
        if ledger.sent_in_last_hour(r.key, now) >= max_per_hour:
            continue
        urgent = [e for e in pending if e.kind != "resolved" and e.finding.severity.at_least(immediate_severity)]
        last = ledger.last_digest(r.key)
        if last is None or now - last >= digest_every:
            due.append(Digest(r, sorted(pending, key=_order)))
        elif urgent:
            due.append(Digest(r, sorted(urgent, key=_order), immediate=True))
    return due


def _order(e: Event) -> tuple[int, int, str]:
    kinds = {"new": 0, "reopened": 1, "overdue": 2, "resolved": 3}
    return (kinds.get(e.kind, 9), -e.finding.severity.rank, e.finding.system_id)
