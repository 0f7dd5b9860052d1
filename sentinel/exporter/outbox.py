"""Elasticsearch outbox families, from `sentinel.sinks.elasticsearch.outbox.outbox_stats` when that sink is installed.

Nothing is exported for a store that has no outbox table: a scrape must never create tables, and zeros for a sink
nobody enabled would read as "all shipped".
"""

from __future__ import annotations

from sentinel.exporter.family import Family
from sentinel.store import SqliteStore


def _has_table(store: SqliteStore, name: str) -> bool:
    row = store.connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
    return row is not None


def outbox_families(store: SqliteStore) -> list[Family]:
    if not _has_table(store, "es_outbox"):
        return []
    try:
        from sentinel.sinks.elasticsearch.outbox import outbox_stats
    except ImportError:
        return []
    stats = outbox_stats(store)
    out: list[Family] = []
    gauges = (
        ("sentinel_outbox_depth", "Documents waiting in the Elasticsearch outbox.", stats.depth),
        (
            "sentinel_outbox_oldest_age_seconds",
            "Age of the oldest waiting document (0 if none).",
            stats.oldest_age_seconds,
        ),
        ("sentinel_es_dead_letters", "Documents held in the dead-letter table now.", stats.dead_letters),
    )
    counters = (
        ("sentinel_es_documents_shipped", "Documents Elasticsearch stored.", stats.shipped_total),
        ("sentinel_es_documents_deduplicated", "Documents Elasticsearch already had (409).", stats.deduplicated_total),
        (
            "sentinel_es_documents_dead_lettered",
            "Documents refused (400/404).",
            stats.dead_lettered_total,
        ),
        (
            "sentinel_outbox_dropped",
            "Documents not queued: outbox full or disk low.",
            stats.dropped_total,
        ),
        ("sentinel_es_retries", "Shipping attempts put back for retry (429, 5xx, unreachable).", stats.retried_total),
    )
    for name, doc, value in gauges:
        family = Family.gauge(name, doc)
        family.add([], value)
        out.append(family)
    for name, doc, value in counters:
        family = Family.counter(name, doc)
        family.add([], value)
        out.append(family)
    return out
