"""Build the official Elasticsearch client from settings, with the transport's own retries off (we classify)."""

from __future__ import annotations

import logging
from typing import Any

from elasticsearch import Elasticsearch

from sentinel.errors import InputError, Problem
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings

#: per-request node-health lines of the transport; the shipper logs outages itself, once and then per minute
_NODE_HEALTH = frozenset(
    {
        "Node %r has failed for %i times in a row, putting on %i second timeout",
        "Node %r has been marked alive after a successful request",
    }
)


class _NodeHealthFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in _NODE_HEALTH


def _quiet_node_pool() -> None:
    pool = logging.getLogger("elastic_transport.node_pool")
    if not any(isinstance(f, _NodeHealthFilter) for f in pool.filters):
        pool.addFilter(_NodeHealthFilter())


def build_client(es: ElasticsearchSettings) -> Elasticsearch:
    _quiet_node_pool()
    kwargs: dict[str, Any] = {
        "request_timeout": es.request_timeout,
        # The shipper decides what is retried and when; a transport retry would resend a whole batch blindly.
        "max_retries": 0,
        "retry_on_status": (),
        "retry_on_timeout": False,
    }
    if es.api_key is not None:
        kwargs["api_key"] = es.api_key.get_secret_value()
    elif es.username is not None:
        kwargs["basic_auth"] = (es.username, es.password.get_secret_value() if es.password else "")
    if es.url.startswith("https://"):
        kwargs["verify_certs"] = es.verify_certs
        if es.ca_file is not None:
            if not es.ca_file.is_file():
                raise InputError([Problem(str(es.ca_file), None, "elasticsearch.ca_file: no such file")])
            kwargs["ca_certs"] = str(es.ca_file)
    return Elasticsearch(es.url, **kwargs)
