"""The store's own tables (component `core`). Each component's list is append-only and ordered; the store records
how many of each have run in `schema_versions`. A stage that needs tables declares its own `SchemaComponent` in
its own module; the composition root (`sentinel/app.py::SCHEMA_COMPONENTS`) passes them to the store, which
imports no stage."""

from __future__ import annotations

from sentinel.store.schema import SchemaComponent

#: The append-only guard of `finding_events` (migration 1). Re-keying a finding's id is the one rewrite of its
#: history rows: `claim_identity` lifts the guard and puts it back in the same transaction.
FINDING_EVENTS_NO_UPDATE = """CREATE TRIGGER finding_events_no_update BEFORE UPDATE ON finding_events
           BEGIN SELECT RAISE(ABORT, 'finding_events is append-only'); END"""

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
        FINDING_EVENTS_NO_UPDATE,
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
    # 3 (issue 13): the owner's planned fix date; sweep progress; aggregates that keep the overview fast
    [
        "ALTER TABLE findings ADD COLUMN planned_fix TEXT",
        # covering indexes: the overview's counts never read the (large) finding rows
        "CREATE INDEX findings_first_seen ON findings (first_seen, system_id, rule_id, category)",
        "CREATE INDEX findings_active ON findings (status, system_id, severity)",
        "CREATE INDEX findings_stale ON findings (stale_since, status, system_id) WHERE stale_since IS NOT NULL",
        "CREATE INDEX findings_rule ON findings (rule_id)",
        "CREATE INDEX finding_events_at ON finding_events (at)",
        "ALTER TABLE sweeps ADD COLUMN done_jobs INTEGER",
        "ALTER TABLE sweeps ADD COLUMN findings_seen INTEGER",
        "ALTER TABLE sweeps ADD COLUMN progress_at TEXT",
        # reachability observations per hour and system: availability over 24 h / 7 d without a history table
        """CREATE TABLE availability_hourly (
            hour TEXT NOT NULL,
            system_id TEXT NOT NULL,
            ok INTEGER NOT NULL,
            total INTEGER NOT NULL,
            PRIMARY KEY (hour, system_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE availability_daily (
            day TEXT NOT NULL,
            system_id TEXT NOT NULL,
            ok INTEGER NOT NULL,
            total INTEGER NOT NULL,
            PRIMARY KEY (day, system_id)
        ) WITHOUT ROWID""",
        # active findings per day, system and severity, as of the day's last write: the trend chart
        """CREATE TABLE findings_daily (
            day TEXT NOT NULL,
            system_id TEXT NOT NULL,
            severity TEXT NOT NULL,
            active INTEGER NOT NULL,
            PRIMARY KEY (day, system_id, severity)
        ) WITHOUT ROWID""",
    ],
    # 4 (issue 12): every source of observations writes an audit record; only probe sweeps count as sweeps
    ["ALTER TABLE sweeps ADD COLUMN source TEXT NOT NULL DEFAULT 'sweep'"],
    # 5 (issue 14): who observed. Rows from before have site '' and vantage '' until the instance that owns the
    # store records its identity (`SqliteStore.claim_identity`, at its first ingest): only it knows where it
    # stands, and that re-keys their ids (the vantage is part of a finding's id) with their history.
    [
        "ALTER TABLE findings ADD COLUMN site TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE findings ADD COLUMN vantage TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE observations_latest ADD COLUMN site TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE observations_latest ADD COLUMN vantage TEXT NOT NULL DEFAULT ''",
        # one row: the site and vantage whose observations this store holds (a store never mixes two)
        """CREATE TABLE store_identity (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            site TEXT NOT NULL,
            vantage TEXT NOT NULL,
            recorded_at TEXT NOT NULL
        )""",
    ],
]


CORE_COMPONENT = SchemaComponent("core", CORE)
