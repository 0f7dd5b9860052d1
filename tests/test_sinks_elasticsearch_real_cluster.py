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
from tests.support.es_scenarios import (
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
    names = IndexNames(es.index_prefix, es.site)
    cleanups: tuple[Callable[[], object], ...] = (
        lambda: client.indices.delete_data_stream(name=[names.history, names.observations]),
        lambda: client.indices.delete(index=names.latest),
        lambda: client.indices.delete_index_template(
            name=",".join([names.latest_template, names.history_template, names.observations_template])
        ),
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


def test_estate_view_reads_every_site(real: tuple[Elasticsearch, ElasticsearchSettings], tmp_path: Path) -> None:
    """The city's estate view over the real cluster (the checks of tests/test_web_estate.py): every site's figures,
    a district user's scope, every finding once across pages, and a clear 503 for a cluster that is not there."""
    from bench.estate_view import SILENT_SITE, SITES, build_estate, ship, web_app
    from sentinel.findings.policy import FindingsSettings
    from sentinel.sinks.elasticsearch.estate import EstateReader
    from sentinel.sinks.elasticsearch.setup import Installer
    from sentinel.store import SqliteStore
    from tests.support.vantage_lab import closed_port
    from tests.support.web_site import call, serving

    client, es = real
    prefix = es.index_prefix
    estate = build_estate(1354)
    figures = estate.figures(FindingsSettings())
    store = SqliteStore(tmp_path / "city.db")
    try:
        Installer(client, es).install()  # the shared templates: every site's indices get the mappings
        ship(client, estate, prefix)
        reader = EstateReader(es, sites=list(SITES))
        with serving(web_app(store, estate.registry, reader), "127.0.0.1") as base:
            status, api, _ = call(f"{base}/api/estate", "city-operator")
            assert status == 200 and api["sites"][0]["site"] == SILENT_SITE
            got = {s["site"]: s for s in api["sites"]}
            for site, want in figures.items():
                assert {k: v for k, v in got[site]["active"].items() if v} == want["active"], site
                assert (got[site]["systems_affected"], got[site]["overdue"]) == (
                    want["systems_affected"],
                    want["overdue"],
                )
                assert got[site]["stale"] == want["stale"] and got[site]["silent"] == (site == SILENT_SITE)
            status, mine, _ = call(f"{base}/api/estate", "hexi-operator")
            assert [s["site"] for s in mine["sites"]] == ["hexi-district"]
            assert call(f"{base}/api/estate/findings?site=city", "hexi-operator")[0] == 403
            seen: list[tuple[str, str]] = []
            after = ""
            while True:
                status, body, _ = call(f"{base}/api/estate/findings?status=all&limit=1000{after}", "city-operator")
                assert status == 200 and body["total"] == len(estate.findings)
                seen += [(f["site"], f["id"]) for f in body["findings"]]
                if body["after"] is None:
                    break
                after = f"&after={body['after']}"
            assert len(seen) == len(set(seen)) == len(estate.findings)
            assert body["by_site"] == {site: want["all"] for site, want in figures.items()}
        gone = ElasticsearchSettings.model_validate({"url": f"http://127.0.0.1:{closed_port()}"})
        with serving(web_app(store, estate.registry, EstateReader(gone)), "127.0.0.1") as base:
            status, down, _ = call(f"{base}/api/estate", "city-operator")
            assert status == 503 and down["unreachable_since"]
    finally:
        store.close()
        # by name: clusters refuse wildcard deletes (action.destructive_requires_name, the default since 8.0)
        for site in SITES:
            with contextlib.suppress(NotFoundError):
                client.indices.delete_data_stream(name=IndexNames(prefix, site).observations)
            client.indices.delete(index=IndexNames(prefix, site).latest, ignore_unavailable=True)
