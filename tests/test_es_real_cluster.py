"""The cluster-agnostic scenarios against a real Elasticsearch (8.x with the 8.x client, 9.x with 9.x).

Runs only when SENTINEL_TEST_ES_URL is set (see docker/elasticsearch.md); optional
SENTINEL_TEST_ES_API_KEY, _USERNAME, _PASSWORD, _CA_FILE. Each test uses its own index prefix and
deletes what it installed.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch, NotFoundError

from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.sinks.elasticsearch.templates import IndexNames
from tests.test_es_scenarios import (
    scenario_exactly_once_after_resend,
    scenario_latest_state_wins,
    scenario_rejected_document_dead_letters,
    scenario_setup_idempotent,
)

URL = os.environ.get("SENTINEL_TEST_ES_URL")
pytestmark = pytest.mark.skipif(not URL, reason="SENTINEL_TEST_ES_URL not set (no real Elasticsearch cluster)")


@pytest.fixture
def real() -> Iterator[tuple[Elasticsearch, ElasticsearchSettings]]:
    assert URL is not None
    options: dict[str, object] = {"url": URL, "index_prefix": f"sentinel-test-{uuid.uuid4().hex[:8]}"}
    for name in ("api_key", "username", "password", "ca_file"):
        value = os.environ.get(f"SENTINEL_TEST_ES_{name.upper()}")
        if value:
            options[name] = value
    options.update(backoff_initial=0.05, backoff_max=0.5)
    es = ElasticsearchSettings.model_validate(options)
    client = build_client(es)
    yield client, es
    names = IndexNames(es.index_prefix)
    cleanups: tuple[Callable[[], object], ...] = (
        lambda: client.indices.delete_data_stream(name=[names.history, names.observations]),
        lambda: client.indices.delete(index=names.latest),
        lambda: client.indices.delete_index_template(name=",".join([names.latest, names.history, names.observations])),
        lambda: client.cluster.delete_component_template(name=names.ecs_component),
        lambda: client.cluster.delete_component_template(name=names.stream_component),
        lambda: client.ilm.delete_lifecycle(name=names.ilm_policy),
    )
    for cleanup in cleanups:
        with contextlib.suppress(NotFoundError):
            cleanup()
    client.close()


def test_setup_idempotent(real: tuple[Elasticsearch, ElasticsearchSettings]) -> None:
    scenario_setup_idempotent(*real)


def test_exactly_once_after_resend(real: tuple[Elasticsearch, ElasticsearchSettings], tmp_path: Path) -> None:
    scenario_exactly_once_after_resend(*real, tmp_path)


def test_latest_state_wins(real: tuple[Elasticsearch, ElasticsearchSettings], tmp_path: Path) -> None:
    scenario_latest_state_wins(*real, tmp_path)


def test_rejected_document_dead_letters(real: tuple[Elasticsearch, ElasticsearchSettings], tmp_path: Path) -> None:
    scenario_rejected_document_dead_letters(*real, tmp_path)
