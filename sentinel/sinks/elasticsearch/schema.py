"""Store schema component `es_outbox`: the transactional outbox, its dead letters and its counters.

Register in sentinel/store/migrations.py::SCHEMAS as `"es_outbox": OUTBOX`. Until then `ensure_schema`
applies the same migrations with the same bookkeeping, so either path leaves the store identical.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store imports this module to register the component: no runtime import back
    from sentinel.store import SqliteStore

COMPONENT = "es_outbox"

OUTBOX: list[list[str]] = [
    # 1: queue, dead letters, counters
    [
        """CREATE TABLE es_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            stream TEXT NOT NULL,
            doc_id TEXT NOT NULL,
            body TEXT NOT NULL,
            enqueued_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            last_error TEXT
        )""",
        # One queued latest-state document per finding: a newer state replaces an unshipped older one.
        "CREATE UNIQUE INDEX es_outbox_latest ON es_outbox (doc_id) WHERE stream = 'latest'",
        """CREATE TABLE es_dead_letters (
            seq INTEGER PRIMARY KEY,
            stream TEXT NOT NULL,
            doc_id TEXT NOT NULL,
            body TEXT NOT NULL,
            enqueued_at REAL NOT NULL,
            dead_at REAL NOT NULL,
            status INTEGER NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE TABLE es_outbox_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ],
    # 2: the ongoing outage, if any, so that it is logged once and then summarised, across shipper instances
    [
        """CREATE TABLE es_outage (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            since REAL NOT NULL,
            reason TEXT NOT NULL,
            reported_at REAL NOT NULL
        )""",
    ],
]


def ensure_schema(store: SqliteStore) -> None:
    """Apply the outbox migrations not yet recorded in `schema_versions` (no-op once registered in SCHEMAS)."""
    db = store.connection
    row = db.execute("SELECT version FROM schema_versions WHERE component = ?", (COMPONENT,)).fetchone()
    version = int(row[0]) if row else 0
    for number, statements in enumerate(OUTBOX[version:], start=version + 1):
        with store.transaction():
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT OR REPLACE INTO schema_versions (component, version) VALUES (?, ?)", (COMPONENT, number))
