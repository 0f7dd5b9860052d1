"""Sink outbox families: per sink (`sink` label: queued, oldest age, dead letters, delivery counters) for every
sink ever installed in this store, plus the Elasticsearch families without a label that dashboards already use.

Nothing is exported for a store without the outbox tables: a scrape never creates tables, and zeros for sinks
nobody enabled would read as "all shipped".
"""

from __future__ import annotations

from sentinel.exporter.family import Family
from sentinel.sinks.outbox import OutboxStats, has_outbox, installed_sinks, outbox_stats
from sentinel.store import SqliteStore

LEGACY_SINK = "elasticsearch"

_GAUGES = (
    ("sentinel_sink_queued", "Rows waiting in the sink's outbox queue.", "depth"),
    ("sentinel_sink_oldest_age_seconds", "Age of the sink's oldest waiting row (0 if none).", "oldest_age_seconds"),
    ("sentinel_sink_dead_letters", "Rows the sink refused as wrong, held as dead letters now.", "dead_letters"),
)
_COUNTERS = (
    ("sentinel_sink_delivered", "Rows the sink's peer stored.", "shipped_total"),
    ("sentinel_sink_deduplicated", "Rows the peer already had (a resend recognised by its id).", "deduplicated_total"),
    ("sentinel_sink_dead_lettered", "Rows refused as wrong and moved to dead letters.", "dead_lettered_total"),
    ("sentinel_sink_dropped", "Rows not queued: outbox full or disk low.", "dropped_total"),
    ("sentinel_sink_retries", "Delivery attempts put back for retry.", "retried_total"),
)


def _legacy(stats: OutboxStats) -> list[Family]:
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
        ("sentinel_es_documents_dead_lettered", "Documents refused (400/404).", stats.dead_lettered_total),
        ("sentinel_outbox_dropped", "Documents not queued: outbox full or disk low.", stats.dropped_total),
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


def outbox_families(store: SqliteStore) -> list[Family]:
    if not has_outbox(store):
        return []
    out = _legacy(outbox_stats(store, LEGACY_SINK))
    stats = {name: outbox_stats(store, name) for name in installed_sinks(store)}
    if not stats:
        return out
    for name, doc, attr in _GAUGES:
        family = Family.gauge(name, doc, ["sink"])
        for sink, s in stats.items():
            family.add([sink], getattr(s, attr))
        out.append(family)
    for name, doc, attr in _COUNTERS:
        family = Family.counter(name, doc, ["sink"])
        for sink, s in stats.items():
            family.add([sink], getattr(s, attr))
        out.append(family)
    return out
