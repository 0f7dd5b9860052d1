"""Elasticsearch as an outbox sink: ECS documents in three streams, each with an id fixed at enqueue time, in the
instance's site's indices (`IndexNames`).

* `latest`: ``_id`` = ``site:vantage:finding id`` (`latest_id`), ``version_type=external`` with ``version`` = the
  row's queue sequence number, so an older or repeated state is refused with 409 and a newer one always wins
  (coalesced: one queued per finding);
* `history` and `observations`: ``_id`` = sha256 of the document (which names its site and vantage),
  ``op_type=create`` (409 if present);
* `retire`: deletes a latest-state document under a pre-sites id when its finding is adopted (404: already gone).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from elastic_transport import TransportError
from elasticsearch.helpers import streaming_bulk

from sentinel.advisories.model import Advisory
from sentinel.models import Finding, Observation
from sentinel.sinks.base import Delivery, EncodeContext, Entry, FindingChange, OutboxSink, Queued, content_id
from sentinel.sinks.elasticsearch.advisories import advisory_document
from sentinel.sinks.elasticsearch.documents import finding_document, latest_id, observation_document, observer
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings, mask_url
from sentinel.sinks.elasticsearch.templates import IndexNames
from sentinel.sinks.outbox import dumps

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger(__name__)

LATEST, HISTORY, OBSERVATIONS, RETIRE, ADVISORIES = "latest", "history", "observations", "retire", "advisories"
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
        self.names = IndexNames(self.es.index_prefix, self.es.site)
        self._stream_index = {
            LATEST: self.names.latest,
            HISTORY: self.names.history,
            RETIRE: self.names.latest,
            ADVISORIES: self.names.advisories,
        }
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
            out.append(Entry(LATEST, latest_id(finding), dumps(doc), coalesce=True, droppable=False))
            # History: a snapshot stamped with when it was recorded (acks do not move last_seen).
            doc["@timestamp"] = doc["event"]["created"] = stamp
            body = dumps(doc)
            out.append(Entry(HISTORY, hash_id(HISTORY, body), body))
        return out

    def encode_rekeyed(
        self, moved: Sequence[tuple[str, Finding]], ctx: EncodeContext, state: Mapping[str, str]
    ) -> list[Entry]:
        """Findings from before sites, adopted: the document a pre-sites id may have left in this site's index
        (queued before the upgrade, or changed before adoption) deleted, and each finding's state and a history
        snapshot under its new id."""
        retired = [Entry(RETIRE, former, "", coalesce=True, droppable=False) for former, _ in moved]
        return retired + self.encode_findings([FindingChange(f, f.status) for _, f in moved], ctx)

    def encode_advisories(self, advisories: Sequence[Advisory], ctx: EncodeContext) -> list[Entry]:
        # only this site's own: a warning received from the city is the city's document already
        return [
            Entry(ADVISORIES, a.id, dumps(advisory_document(a)), coalesce=True, droppable=False)
            for a in advisories
            if a.issued_by == self.es.site
        ]

    def encode_observations(self, observations: Sequence[Observation], ctx: EncodeContext) -> list[Entry]:
        out = []
        for obs in observations:
            body = dumps(observation_document(obs, ctx.system(obs.system_id), self.observer))
            out.append(Entry(OBSERVATIONS, hash_id(OBSERVATIONS, body), body))
        return out

    # -- delivery ---------------------------------------------------------------------------------
    def _action(self, row: Queued) -> dict[str, Any]:
        index = self._stream_index.get(row.stream, self.names.observations)
        if row.stream == RETIRE:
            return {"_op_type": "delete", "_index": index, "_id": row.doc_id}
        if row.stream in (LATEST, ADVISORIES):
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
            for row, (status, reason) in zip(rows, self._send(rows), strict=False):
                # a retired document that is not there (never shipped under that id, or deleted already) is gone
                result.statuses.append((200, "") if row.stream == RETIRE and status == 404 else (status, reason))
        except TransportError as exc:  # refused, reset, timed out: no answer for the rest of the batch
            result.unreachable = f"{mask_url(self.es.url)} unreachable: {exc.message}"
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # an answer that is not a bulk response
            result.unreachable = f"{mask_url(self.es.url)} sent a malformed bulk response: {exc!r}"
        return result

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None
