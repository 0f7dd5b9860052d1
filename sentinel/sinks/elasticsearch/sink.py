"""Elasticsearch as an outbox sink: ECS documents in three streams, each with an id fixed at enqueue time.

* `latest`: ``_id`` = finding id, ``version_type=external`` with ``version`` = the row's queue sequence number,
  so an older or repeated state is refused with 409 and a newer one always wins (coalesced: one queued per finding);
* `history` and `observations`: ``_id`` = sha256 of the document, ``op_type=create`` (409 if present).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from elastic_transport import TransportError
from elasticsearch.helpers import streaming_bulk

from sentinel.models import Observation
from sentinel.sinks.base import Delivery, EncodeContext, Entry, FindingChange, OutboxSink, Queued, content_id
from sentinel.sinks.elasticsearch.documents import finding_document, observation_document, observer
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings, mask_url
from sentinel.sinks.elasticsearch.templates import IndexNames
from sentinel.sinks.outbox import dumps

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger(__name__)

LATEST, HISTORY, OBSERVATIONS = "latest", "history", "observations"
MAX_REASON = 500


def hash_id(stream: str, body: str) -> str:
    return content_id(stream, body)


class ElasticsearchSink(OutboxSink):
    name = "elasticsearch"
    title = "Elasticsearch"
    Options = ElasticsearchSettings
    droppable_what: ClassVar[str] = "history/observation documents"

    def __init__(self, options: Mapping[str, object] | ElasticsearchSettings, client: Elasticsearch | None = None):
        super().__init__(options)
        self.es: ElasticsearchSettings = self.options  # type: ignore[assignment]
        self._client = client
        self._own_client = client is None
        self.names = IndexNames(self.es.index_prefix)
        self._stream_index = {LATEST: self.names.latest, HISTORY: self.names.history}
        self.observer = observer()

    @property
    def client(self) -> Elasticsearch:
        if self._client is None:
            from sentinel.sinks.elasticsearch.client import build_client

            self._client = build_client(self.es)
        return self._client

    def describe(self) -> str:
        return mask_url(self.es.url)

    # -- encoding (inside the store's write transaction) ------------------------------------------
    def encode_findings(self, changes: Sequence[FindingChange], ctx: EncodeContext) -> list[Entry]:
        out: list[Entry] = []
        stamp = datetime.fromtimestamp(ctx.now, UTC).isoformat()
        for change in changes:
            finding = change.finding
            doc = finding_document(finding, ctx.system(finding.system_id), self.observer)
            out.append(Entry(LATEST, finding.id, dumps(doc), coalesce=True, droppable=False))
            # History: a snapshot stamped with when it was recorded (acks do not move last_seen).
            doc["@timestamp"] = doc["event"]["created"] = stamp
            body = dumps(doc)
            out.append(Entry(HISTORY, hash_id(HISTORY, body), body))
        return out

    def encode_observations(self, observations: Sequence[Observation], ctx: EncodeContext) -> list[Entry]:
        out = []
        for obs in observations:
            body = dumps(observation_document(obs, ctx.system(obs.system_id), self.observer))
            out.append(Entry(OBSERVATIONS, hash_id(OBSERVATIONS, body), body))
        return out

    # -- delivery ---------------------------------------------------------------------------------
    def _action(self, row: Queued) -> dict[str, Any]:
        index = self._stream_index.get(row.stream, self.names.observations)
        if row.stream == LATEST:
            # External version = queue sequence number: later states win, repeats answer 409.
            return {
                "_op_type": "index",
                "_index": index,
                "_id": row.doc_id,
                "version": row.seq,
                "version_type": "external",
                "_source": row.body,
            }
        return {"_op_type": "create", "_index": index, "_id": row.doc_id, "_source": row.body}

    def _send(self, rows: Sequence[Queued]) -> Iterator[tuple[int, str]]:
        results = streaming_bulk(
            self.client,
            (self._action(r) for r in rows),
            chunk_size=self.es.batch_size,
            max_chunk_bytes=20 * 1024 * 1024,
            raise_on_error=False,
            raise_on_exception=False,
            max_retries=0,
            yield_ok=True,
        )
        for ok, item in results:
            info = next(iter(item.values()))
            status = int(info.get("status") or 0)
            error = info.get("error")
            if isinstance(error, dict):
                reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
            else:
                reason = str(error or "")
            if not ok and 200 <= status < 300:
                # e.g. a 200 from something that is not Elasticsearch (no product header): not stored.
                status = 0
            yield status, reason[:MAX_REASON]

    def deliver(self, rows: Sequence[Queued], state: Mapping[str, str]) -> Delivery:
        result = Delivery()
        try:
            for outcome in self._send(rows):
                result.statuses.append(outcome)
        except TransportError as exc:  # refused, reset, timed out: no answer for the rest of the batch
            result.unreachable = f"{mask_url(self.es.url)} unreachable: {exc.message}"
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # an answer that is not a bulk response
            result.unreachable = f"{mask_url(self.es.url)} sent a malformed bulk response: {exc!r}"
        return result

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None
