"""registry/sharding.py: rendezvous `--shard i/n`. Every system has exactly one shard, an added instance moves few
systems; and three monitors over one registry and one Elasticsearch cover the estate once: each system is
monitored by exactly one instance, and every finding arrives once (deterministic ids, no conflicting state)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sentinel.demo.estate import DemoEstate
from sentinel.registry.sharding import parse_shard, shard_of
from tests.es_double import EsDouble
from tests.support.estate import background_estate, demo_collectors, write_registry

IDS = [f"sys-{i:05d}" for i in range(4000)]


def test_every_system_has_exactly_one_shard_and_load_is_even() -> None:
    counts = [0, 0, 0]
    for sid in IDS:
        counts[shard_of(sid, 3) - 1] += 1
    assert sum(counts) == len(IDS) and min(counts) > len(IDS) / 3 * 0.9


def test_adding_an_instance_moves_few_systems() -> None:
    moved = sum(1 for sid in IDS if shard_of(sid, 3) != shard_of(sid, 4))
    assert moved / len(IDS) < 0.30  # ideal is 1/4; a modulo split would move ~3/4
    assert all(shard_of(sid, 4) == 4 for sid in IDS if shard_of(sid, 3) != shard_of(sid, 4))


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1-3", "a/b", "1/0"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(spec)


NET = "127.83.0"


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[DemoEstate]:
    with background_estate(tmp_path / "estate", NET) as (est, _):
        yield est


def sentinel(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The `sentinel` command in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "sentinel", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_three_shards_cover_the_estate_once(estate: DemoEstate, tmp_path: Path) -> None:
    registry = write_registry(estate, tmp_path)
    collectors = demo_collectors(estate, probes=["tcp_ports", "http", "tls"])
    with EsDouble() as double:
        env = {
            **os.environ,
            "SENTINEL_ELASTICSEARCH_URL": double.url,
            "SENTINEL_ELASTICSEARCH_OUTBOX_MIN_FREE_BYTES": "0",
        }
        assert sentinel("es", "setup", env=env).returncode == 0
        owned: dict[int, set[str]] = {}
        for shard in (1, 2, 3):
            config = tmp_path / f"s{shard}.yaml"
            config.write_text(
                yaml.safe_dump(
                    {"registry": str(registry), "store": str(tmp_path / f"s{shard}.db"), "collectors": collectors}
                ),
                encoding="utf-8",
            )
            listed = sentinel("registry", "list", str(registry), "--shard", f"{shard}/3", "--format", "ids", env=env)
            owned[shard] = set(listed.stdout.split())
            scan = sentinel("scan", "--config", str(config), "--shard", f"{shard}/3", "--format", "json", env=env)
            assert scan.returncode == 0, scan.stderr
            ship = sentinel("es", "ship", "--store", str(tmp_path / f"s{shard}.db"), env=env)
            assert ship.returncode == 0, ship.stdout + ship.stderr
        # Every system is owned by exactly one shard, and each store holds only its own systems.
        all_ids = {s["id"] for s in yaml.safe_load(registry.read_text())["systems"]}
        assert set().union(*owned.values()) == all_ids
        assert sum(len(v) for v in owned.values()) == len(all_ids)
        for shard, ids in owned.items():
            db = sqlite3.connect(tmp_path / f"s{shard}.db")
            observed = {r[0] for r in db.execute("SELECT DISTINCT system_id FROM observations_latest")}
            stored = [r[0] for r in db.execute("SELECT id FROM findings")]
            db.close()
            assert observed == ids, (shard, observed, ids)
            assert stored or not ids, shard  # every system of the demo estate has at least one finding
        # Elasticsearch holds each finding once, from the one shard that owns its system.
        latest = double.docs("sentinel-findings-latest-default")
        per_shard = {}
        for shard in (1, 2, 3):
            db = sqlite3.connect(tmp_path / f"s{shard}.db")
            per_shard[shard] = {f"{r[1]}:{r[2]}:{r[0]}" for r in db.execute("SELECT id, site, vantage FROM findings")}
            db.close()
        assert set(latest) == set().union(*per_shard.values())
        assert sum(len(v) for v in per_shard.values()) == len(latest)  # no finding in two shards
        assert double.count("sentinel-findings-history-default") == len(latest)
        systems = {doc["sentinel"]["system"]["id"] for doc in latest.values()}
        assert {"city-portal", "district-portal", "street-records", "district-permits"} <= systems
