"""Store schema component `es_outbox`: the Elasticsearch outbox's own tables before issue 12, and (migration 3)
their move into the shared sink outbox (`sentinel.sinks.outbox.SINK_OUTBOX`).

Migration 3 carries queued rows, dead letters, counters, the outage record and the AUTOINCREMENT counter over
(the counter matters: queue sequence numbers are the external versions of latest-state documents, and a new one
must exceed every version already in the cluster). `es_outbox` and `es_dead_letters` stay as views over the
shared tables (writable `es_outbox`, for tools that queued or read them directly).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sentinel.sinks.outbox import SINK_OUTBOX
from sentinel.store.schema import SchemaComponent

if TYPE_CHECKING:
    from sentinel.store import SqliteStore

COMPONENT = "es_outbox"
SINK = "elasticsearch"

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
    # 2: the ongoing outage, if any
    [
        """CREATE TABLE es_outage (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            since REAL NOT NULL,
            reason TEXT NOT NULL,
            reported_at REAL NOT NULL
        )""",
    ],
    # 3 (issue 12): into the shared sink outbox
    [
        # the sequence first, so the rows moved below and every later one keep growing past shipped versions
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', 0"
        " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')",
        "UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'es_outbox'),"
        " 0), COALESCE((SELECT MAX(seq) FROM es_dead_letters), 0)) WHERE name = 'outbox'",
        f"""INSERT INTO outbox (seq, sink, stream, doc_id, body, enqueued_at, attempts, next_attempt_at, last_error,
            coalesced) SELECT seq, '{SINK}', stream, doc_id, body, enqueued_at, attempts, next_attempt_at, last_error,
            stream = 'latest' FROM es_outbox""",
        f"""INSERT INTO outbox_dead_letters (seq, sink, stream, doc_id, body, enqueued_at, dead_at, status, reason)
            SELECT seq, '{SINK}', stream, doc_id, body, enqueued_at, dead_at, status, reason FROM es_dead_letters""",
        f"INSERT INTO outbox_counters (sink, name, value) SELECT '{SINK}', name, value FROM es_outbox_counters",
        f"""INSERT INTO outbox_outage (sink, since, reason, reported_at)
            SELECT '{SINK}', since, reason, reported_at FROM es_outage""",
        # a store that used Elasticsearch keeps its per-sink metrics
        f"""INSERT OR IGNORE INTO outbox_sinks (sink, installed_at) SELECT '{SINK}', unixepoch()
            WHERE EXISTS (SELECT 1 FROM es_outbox) OR EXISTS (SELECT 1 FROM es_outbox_counters)""",
        "DROP TABLE es_outbox",
        "DROP TABLE es_dead_letters",
        "DROP TABLE es_outbox_counters",
        "DROP TABLE es_outage",
        f"""CREATE VIEW es_outbox AS SELECT seq, stream, doc_id, body, enqueued_at, attempts, next_attempt_at,
            last_error FROM outbox WHERE sink = '{SINK}'""",
        f"""CREATE TRIGGER es_outbox_insert INSTEAD OF INSERT ON es_outbox BEGIN
            INSERT OR REPLACE INTO outbox (seq, sink, stream, doc_id, body, enqueued_at, attempts, next_attempt_at,
                last_error, coalesced)
            VALUES (NEW.seq, '{SINK}', NEW.stream, NEW.doc_id, NEW.body, NEW.enqueued_at, COALESCE(NEW.attempts, 0),
                COALESCE(NEW.next_attempt_at, 0), NEW.last_error, NEW.stream = 'latest');
            END""",
        f"""CREATE VIEW es_dead_letters AS SELECT seq, stream, doc_id, body, enqueued_at, dead_at, status, reason
            FROM outbox_dead_letters WHERE sink = '{SINK}'""",
    ],
]

ES_OUTBOX = SchemaComponent(COMPONENT, OUTBOX, requires=(SINK_OUTBOX,))


def ensure_schema(store: SqliteStore) -> None:
    """Apply the shared outbox and this component through the store's loop (a no-op once current)."""
    store.install(ES_OUTBOX)
