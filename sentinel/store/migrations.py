"""Schema migrations per component. Each component's list is append-only and ordered; the store records
how many of each have run in `schema_versions`. A new stage that needs tables adds its own component
(its own list in its own module, registered in `SCHEMAS`) instead of editing another's."""

from __future__ import annotations

CORE: list[list[str]] = [
    # 1: findings, their audit trail, latest observations, sweep audit records
    [
        """CREATE TABLE findings (
            id TEXT PRIMARY KEY,
            rule_id TEXT NOT NULL,
            title TEXT NOT NULL,
            severity TEXT NOT NULL,
            category TEXT NOT NULL,
            system_id TEXT NOT NULL,
            target TEXT NOT NULL,
            status TEXT NOT NULL,
            first_seen TEXT NOT NULL,
            last_seen TEXT NOT NULL,
            occurrences INTEGER NOT NULL,
            evidence TEXT NOT NULL,
            controls TEXT NOT NULL,
            remediation TEXT NOT NULL,
            status_reason TEXT,
            status_by TEXT,
            suppressed_until TEXT,
            resolved_at TEXT,
            regression INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX findings_status ON findings (status, severity)",
        "CREATE INDEX findings_system ON findings (system_id)",
        """CREATE TABLE finding_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            finding_id TEXT NOT NULL,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            from_status TEXT,
            to_status TEXT NOT NULL,
            reason TEXT
        )""",
        "CREATE INDEX finding_events_finding ON finding_events (finding_id, seq)",
        # Append-only audit log: the database itself refuses edits and deletions.
        """CREATE TRIGGER finding_events_no_update BEFORE UPDATE ON finding_events
           BEGIN SELECT RAISE(ABORT, 'finding_events is append-only'); END""",
        """CREATE TRIGGER finding_events_no_delete BEFORE DELETE ON finding_events
           BEGIN SELECT RAISE(ABORT, 'finding_events is append-only'); END""",
        """CREATE TABLE observations_latest (
            kind TEXT NOT NULL,
            system_id TEXT NOT NULL,
            target TEXT NOT NULL,
            observed_at TEXT NOT NULL,
            probe TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            data TEXT NOT NULL,
            PRIMARY KEY (kind, system_id, target)
        )""",
        """CREATE TABLE sweeps (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            actor TEXT NOT NULL,
            config_hash TEXT NOT NULL,
            planned_jobs INTEGER NOT NULL,
            summary TEXT
        )""",
    ],
    # 2: an active finding the sweeps could not confirm (issue 11): shown as stale, never resolved for it
    ["ALTER TABLE findings ADD COLUMN stale_since TEXT"],
]


from sentinel.engine.state_schema import ENGINE_STATE  # noqa: E402
from sentinel.notify.digest import NOTIFY_SCHEMA  # noqa: E402 - registry of components, after CORE
from sentinel.sinks.elasticsearch.schema import OUTBOX  # noqa: E402

SCHEMAS: dict[str, list[list[str]]] = {
    "core": CORE,
    "notify": NOTIFY_SCHEMA,
    "es_outbox": OUTBOX,
    "engine_state": ENGINE_STATE,
}
