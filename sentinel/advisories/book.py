"""The warnings an instance holds (issued here, or received from the issuing site), in the embedded store.

Saving a warning hands it to the store's write hooks in the same transaction, so the outbox queues it for the
sinks that carry warnings to other sites (Elasticsearch): an issued warning is never lost between here and them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sentinel.advisories.model import Advisory
from sentinel.findings.lifecycle import LifecycleEvent
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Finding
from sentinel.models.finding import ACTIVE_STATUSES
from sentinel.store import SqliteStore
from sentinel.store.schema import SchemaComponent, migrate
from sentinel.store.sqlite import FindingQuery

ADVISORIES_SCHEMA: list[list[str]] = [
    [
        """CREATE TABLE advisories (
            id TEXT PRIMARY KEY,
            issued_by TEXT NOT NULL,
            issued_at TEXT NOT NULL,
            deadline TEXT NOT NULL,
            withdrawn_at TEXT,
            body TEXT NOT NULL
        )""",
    ]
]
#: the store schema component of the warnings (passed to the store by the composition root)
ADVISORIES_COMPONENT = SchemaComponent("advisories", ADVISORIES_SCHEMA)
#: what the store's write hooks are told when warnings are saved (the outbox encodes them per sink)
WRITE_KIND = "advisories"


class AdvisoryBook:
    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        # a store opened without the component (a tool, a test) gets the table through the store's loop
        migrate(store.connection, [ADVISORIES_COMPONENT], store.path)

    def save(self, advisories: Iterable[Advisory]) -> list[Advisory]:
        """Add or update warnings; returns those that changed (a repeated sync changes nothing and queues
        nothing)."""
        db = self.store.connection
        changed: list[Advisory] = []
        with self.store.transaction():
            for advisory in advisories:
                body = advisory.model_dump_json(by_alias=True, exclude_none=True)
                row = db.execute("SELECT body FROM advisories WHERE id = ?", (advisory.id,)).fetchone()
                if row is not None and row[0] == body:
                    continue
                db.execute(
                    "INSERT OR REPLACE INTO advisories (id, issued_by, issued_at, deadline, withdrawn_at, body) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        advisory.id,
                        advisory.issued_by,
                        advisory.issued_at.isoformat(),
                        advisory.deadline.isoformat(),
                        advisory.withdrawn_at.isoformat() if advisory.withdrawn_at else None,
                        body,
                    ),
                )
                changed.append(advisory)
            if changed:
                self.store.publish(WRITE_KIND, changed)
        return changed

    def get(self, advisory_id: str) -> Advisory | None:
        row = self.store.connection.execute("SELECT body FROM advisories WHERE id = ?", (advisory_id,)).fetchone()
        return Advisory.model_validate_json(row[0]) if row else None

    def all(self, active_only: bool = False) -> list[Advisory]:
        sql = "SELECT body FROM advisories" + (" WHERE withdrawn_at IS NULL" if active_only else "")
        rows = self.store.connection.execute(sql + " ORDER BY issued_at, id")
        return [Advisory.model_validate_json(r[0]) for r in rows]

    def findings(self, advisory: Advisory) -> list[Finding]:
        """This instance's findings for the warning, in every status (what its progress is read from)."""
        return self.store.query_findings(FindingQuery(rule_ids=[advisory.rule_id]), order="oldest")

    def withdraw(
        self, advisory: Advisory, at: datetime, tracker: FindingTracker, actor: str, reason: str
    ) -> tuple[Advisory, list[Finding]]:
        """Mark the warning withdrawn (its rule stops) and suppress its active findings here, with the reason
        in their history: a withdrawn warning is the issuer's decision, not evidence that anything was fixed."""
        withdrawn = advisory if advisory.withdrawn_at is not None else advisory.model_copy(update={"withdrawn_at": at})
        self.save([withdrawn])
        return withdrawn, self.retire_findings(withdrawn, tracker, actor, reason)

    def receive(
        self, advisories: Iterable[Advisory], own_site: str, tracker: FindingTracker, actor: str
    ) -> list[Advisory]:
        """Warnings read from the shared cluster: other sites' (new, changed or withdrawn) are saved here; a
        withdrawn one retires its findings here. This site's own are the ones it holds already."""
        changed = self.save([a for a in advisories if a.issued_by != own_site])
        for advisory in changed:
            self.retire_findings(advisory, tracker, actor, "")
        return changed

    def retire_findings(self, advisory: Advisory, tracker: FindingTracker, actor: str, reason: str) -> list[Finding]:
        if advisory.withdrawn_at is None:
            return []
        why = f"early warning {advisory.id} withdrawn by {advisory.issued_by}" + (f": {reason}" if reason else "")
        active = [f for f in self.findings(advisory) if f.status in ACTIVE_STATUSES]
        for finding in active:
            tracker.act(finding, LifecycleEvent.SUPPRESS, actor, why, advisory.withdrawn_at)
        return active
