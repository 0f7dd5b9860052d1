"""Drain the Elasticsearch rows of the shared outbox: the generic `sentinel.sinks.shipper.Shipper` with the
Elasticsearch sink, under the constructor and names this module always had (`Shipper(store, client, es)`).

2xx: stored. 409: already there (a resend after a crash or retry): done, counted as deduplicated. 429, 5xx, no
answer: kept, retried after exponential backoff with jitter. 400/404: moved to the dead-letter table with the reason.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from elasticsearch import Elasticsearch

from sentinel.sinks.base import Verdict, classify_http
from sentinel.sinks.elasticsearch.schema import ensure_schema
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.sinks.elasticsearch.sink import ElasticsearchSink
from sentinel.sinks.shipper import MAX_REASON, OUTAGE_SUMMARY_EVERY, ShipReport
from sentinel.sinks.shipper import Shipper as SinkShipper
from sentinel.store import SqliteStore

__all__ = ["DEAD_LETTER_STATUSES", "MAX_REASON", "OUTAGE_SUMMARY_EVERY", "ShipReport", "Shipper", "classify"]

#: Statuses that mean "this document is wrong": retrying would only fail again.
DEAD_LETTER_STATUSES = (400, 404)


def classify(status: int) -> Verdict:
    """'done', 'duplicate', 'retry' or 'dead' for one bulk item status (0: no usable answer)."""
    return classify_http(status, DEAD_LETTER_STATUSES)


class Shipper(SinkShipper):
    def __init__(
        self,
        store: SqliteStore,
        client: Elasticsearch,
        es: ElasticsearchSettings,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        ensure_schema(store)
        self.client = client
        self.es = es
        self.elasticsearch = ElasticsearchSink(es, client)
        self.names = self.elasticsearch.names
        super().__init__(store, self.elasticsearch, clock, sleep, jitter)
