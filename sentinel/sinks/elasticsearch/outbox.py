"""The Elasticsearch rows of the shared sink outbox (`sentinel.sinks.outbox`), under this module's former names.

`install_outbox(store, settings)` queues findings/observations for Elasticsearch alone (tools, the benchmark);
the composition root installs every configured sink with one hook (`sentinel.sinks.outbox.install_sinks`).
The queue is bounded by `outbox_max_items` and `outbox_min_free_bytes`. When full, history and observation
documents are dropped (counted and logged); latest-state rows are never dropped: they are coalesced per
finding, so there are never more of them than findings.
"""

from __future__ import annotations

import time

from sentinel.registry.models import Registry
from sentinel.sinks.elasticsearch.schema import ensure_schema
from sentinel.sinks.elasticsearch.settings import elasticsearch_settings
from sentinel.sinks.elasticsearch.sink import HISTORY, LATEST, OBSERVATIONS, ElasticsearchSink
from sentinel.sinks.outbox import COUNTERS, OutboxStats, OutboxWriter, RegistrySource, install_sinks
from sentinel.sinks.outbox import outbox_stats as sink_outbox_stats
from sentinel.sinks.settings import SinkSettingsSource
from sentinel.store import SqliteStore

__all__ = [
    "COUNTERS",
    "HISTORY",
    "LATEST",
    "OBSERVATIONS",
    "OutboxStats",
    "OutboxWriter",
    "Registry",
    "install_outbox",
    "outbox_stats",
]


def outbox_stats(store: SqliteStore, now: float | None = None) -> OutboxStats:
    """The Elasticsearch queue's depth, age and counters (all zeros for a store without the outbox)."""
    return sink_outbox_stats(store, ElasticsearchSink.name, now if now is not None else time.time())


def install_outbox(
    store: SqliteStore, settings: SinkSettingsSource, registry: RegistrySource = None
) -> OutboxWriter | None:
    """Queue every findings/observations write for Elasticsearch, if Elasticsearch is configured.

    Returns the installed writer, or None when Elasticsearch is not configured (nothing is queued)."""
    es = elasticsearch_settings(settings)
    if es is None:
        return None
    ensure_schema(store)
    return install_sinks(store, [ElasticsearchSink(es)], registry)
