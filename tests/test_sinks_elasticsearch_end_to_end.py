"""A real sweep of the loopback demo estate, recorded with the outbox installed, shipped to the double."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.app import Sentinel
from sentinel.config.settings import CollectorSettings, Settings
from sentinel.demo.estate import DemoEstate
from sentinel.models import Observation
from sentinel.registry.loader import load_registry
from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.outbox import outbox_stats
from sentinel.sinks.elasticsearch.setup import Installer
from sentinel.sinks.elasticsearch.shipper import Shipper
from tests.es_double import EsDouble
from tests.support.es_scenarios import es_settings


async def test_sweep_findings_reach_elasticsearch_once_with_registry_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with EsDouble() as double:
        monkeypatch.setenv("SENTINEL_ELASTICSEARCH_URL", double.url)
        monkeypatch.setenv("SENTINEL_ELASTICSEARCH_OUTBOX_MIN_FREE_BYTES", "0")
        es = es_settings(double.url)
        async with DemoEstate(tmp_path) as estate:
            registry_file = tmp_path / "registry.yaml"
            registry_file.write_text(estate.registry_yaml(), encoding="utf-8")
            assert estate.ca is not None
            settings = Settings(
                registry=registry_file,
                store=tmp_path / "sentinel.db",
                collectors=CollectorSettings(
                    tls={"ca_file": estate.ca.files.cert},
                    tls_scan={"ca_file": estate.ca.files.cert},
                    connect_timeout=1.0,
                    per_target_rate=50,
                ),
            )
            app = Sentinel(settings, registry=load_registry(registry_file))
            outcome = await app.sweep()  # the app installs the outbox hook on its store when ES is configured
        client = build_client(es)
        Installer(client, es).install()
        report = Shipper(app.store, client, es).drain(timeout=10)
        client.close()
        findings = app.store.list_findings()
        assert findings
        assert report.remaining == 0
        assert outbox_stats(app.store).depth == 0
        latest = double.docs("sentinel-findings-latest-default")  # the site's own indices
        assert set(latest) == {f"default:internal:{f.id}" for f in findings}
        assert double.count("sentinel-findings-history-default") == len(findings)
        assert double.count("sentinel-observations-default") == len(outcome.observations)
        portal = next(d for d in latest.values() if d["sentinel"]["system"]["id"] == "city-portal")
        assert portal["labels"]["tier"] == "city"
        assert portal["sentinel"]["system"]["department"]
        assert all(isinstance(o, Observation) for o in outcome.observations)
        app.close()
