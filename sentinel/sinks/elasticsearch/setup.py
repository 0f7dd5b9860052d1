"""`sentinel es setup`: install the ILM policy, templates, latest-state index and data streams, idempotently.

Each installed object carries `_meta.sentinel_hash`, a hash of what Sentinel would PUT. Setup reads the
object first and PUTs only when the hash differs, so a second run changes nothing (and a real cluster's
own normalisation of stored templates cannot make it look different).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError

from sentinel import __version__
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.sinks.elasticsearch.templates import IndexNames, component_templates, ilm_policy, index_templates

CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"


@dataclass(frozen=True)
class SetupStep:
    kind: str  # ilm_policy | component_template | index_template | index | data_stream
    name: str
    action: str  # created | updated | unchanged


def content_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def with_meta(body: dict[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "_meta": {"managed_by": "sentinel", "sentinel_version": __version__, "sentinel_hash": content_hash(body)},
    }


def _stored_hash(found: dict[str, Any] | None) -> str | None:
    meta = (found or {}).get("_meta") or {}
    value = meta.get("sentinel_hash")
    return str(value) if value is not None else None


class Installer:
    def __init__(self, client: Elasticsearch, es: ElasticsearchSettings) -> None:
        self.client = client
        self.es = es
        self.names = IndexNames(es.index_prefix, es.site)  # templates for every site; this site's indices

    def _ilm(self) -> SetupStep:
        name = self.names.ilm_policy
        body = with_meta(ilm_policy(self.es))
        try:
            found = self.client.ilm.get_lifecycle(name=name).body.get(name, {}).get("policy")
        except NotFoundError:
            found = None
        if _stored_hash(found) == body["_meta"]["sentinel_hash"]:
            return SetupStep("ilm_policy", name, UNCHANGED)
        self.client.ilm.put_lifecycle(name=name, policy=body)
        return SetupStep("ilm_policy", name, CREATED if found is None else UPDATED)

    def _component(self, name: str, body: dict[str, Any]) -> SetupStep:
        full = with_meta(body)
        try:
            items = self.client.cluster.get_component_template(name=name).body.get("component_templates", [])
            found = items[0]["component_template"] if items else None
        except NotFoundError:
            found = None
        if _stored_hash(found) == full["_meta"]["sentinel_hash"]:
            return SetupStep("component_template", name, UNCHANGED)
        self.client.cluster.put_component_template(name=name, template=full["template"], meta=full["_meta"])
        return SetupStep("component_template", name, CREATED if found is None else UPDATED)

    def _index_template(self, name: str, body: dict[str, Any]) -> SetupStep:
        full = with_meta(body)
        try:
            items = self.client.indices.get_index_template(name=name).body.get("index_templates", [])
            found = items[0]["index_template"] if items else None
        except NotFoundError:
            found = None
        if _stored_hash(found) == full["_meta"]["sentinel_hash"]:
            return SetupStep("index_template", name, UNCHANGED)
        self.client.indices.put_index_template(
            name=name,
            index_patterns=full["index_patterns"],
            composed_of=full["composed_of"],
            priority=full["priority"],
            template=full.get("template"),
            data_stream=full.get("data_stream"),
            meta=full["_meta"],
        )
        return SetupStep("index_template", name, CREATED if found is None else UPDATED)

    def _latest_index(self) -> SetupStep:
        name = self.names.latest
        if self.client.indices.exists(index=name):
            return SetupStep("index", name, UNCHANGED)
        self.client.indices.create(index=name)
        return SetupStep("index", name, CREATED)

    def _data_stream(self, name: str) -> SetupStep:
        try:
            self.client.indices.get_data_stream(name=name)
            return SetupStep("data_stream", name, UNCHANGED)
        except NotFoundError:
            self.client.indices.create_data_stream(name=name)
            return SetupStep("data_stream", name, CREATED)

    def install(self) -> list[SetupStep]:
        """In dependency order: policy, component templates, index templates, then the indices using them."""
        steps = [self._ilm()]
        steps += [self._component(n, b) for n, b in component_templates(self.names).items()]
        steps += [self._index_template(n, b) for n, b in index_templates(self.names).items()]
        steps.append(self._latest_index())
        steps += [self._data_stream(n) for n in (self.names.history, self.names.observations)]
        return steps
