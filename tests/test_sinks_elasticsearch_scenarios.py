"""Shipping scenarios that hold for any cluster: run here against the double, and by
test_sinks_elasticsearch_real_cluster.py against a real Elasticsearch when SENTINEL_TEST_ES_URL is set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.setup import Installer
from tests.es_double import EsDouble
from tests.support.es_scenarios import (
    es_settings,
    scenario_exactly_once_after_resend,
    scenario_latest_state_wins,
    scenario_rejected_document_dead_letters,
    scenario_setup_idempotent,
)


# -- against the double -----------------------------------------------------------------------
@pytest.fixture
def double() -> Iterator[EsDouble]:
    with EsDouble() as es:
        yield es


@pytest.fixture
def client(double: EsDouble) -> Iterator[Elasticsearch]:
    c = build_client(es_settings(double.url))
    yield c
    c.close()


def test_setup_idempotent(double: EsDouble, client: Elasticsearch) -> None:
    scenario_setup_idempotent(client, es_settings(double.url))
    puts = list(double.state.puts)
    Installer(client, es_settings(double.url)).install()
    assert double.state.puts == puts  # the second run sent no PUT at all


def test_exactly_once_after_resend(double: EsDouble, client: Elasticsearch, tmp_path: Path) -> None:
    scenario_exactly_once_after_resend(client, es_settings(double.url), tmp_path)


def test_latest_state_wins(double: EsDouble, client: Elasticsearch, tmp_path: Path) -> None:
    scenario_latest_state_wins(client, es_settings(double.url), tmp_path)


def test_rejected_document_dead_letters(double: EsDouble, client: Elasticsearch, tmp_path: Path) -> None:
    scenario_rejected_document_dead_letters(client, es_settings(double.url), tmp_path)
