"""For the metrics, alerting and Grafana tests: a store filled by a real sweep of the demo estate, `sentinel serve`
on it, and a real Prometheus (Debian `prometheus`) scraping it on loopback. The `metrics_stack` fixture
(tests/conftest.py) builds it once per session."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentinel.app import Sentinel
from sentinel.demo.estate import DemoEstate, free_port
from sentinel.registry.loader import load_registry
from sentinel.sinks.elasticsearch.schema import ensure_schema
from sentinel.store import SqliteStore
from tests.netns import require_tool
from tests.support.estate import demo_settings, write_registry

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "dashboards" / "prometheus" / "alerts.yml"
LOOPBACK = "127.0.0.1"
DEMO_NET = "127.77.9"  # a /24 of its own, so these tests never share ports with the demo or other tests
#: Families exported only when another stage is installed (compliance assessment, Elasticsearch outbox).
OPTIONAL_FAMILIES = ("sentinel_compliance_", "sentinel_outbox_", "sentinel_es_")


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def wait_until(what: str, check: Any, timeout: float = 20, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            pytest.fail(f"{what}: process exited with {proc.returncode}: {err[-2000:]}")
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@dataclass
class DemoStore:
    folder: Path
    store: Path
    registry: Path


def with_outbox(store: SqliteStore) -> None:
    """Give the store the Elasticsearch outbox tables, so their families are scraped."""
    ensure_schema(store)


def swept_demo_store(folder: Path) -> DemoStore:
    """Run one real sweep of the demo estate into a fresh store; the demo servers stop afterwards."""

    async def run() -> DemoStore:
        async with DemoEstate(folder, net=DEMO_NET) as estate:
            registry_file = write_registry(estate, folder)
            settings = demo_settings(estate, registry_file, folder / "sentinel.db", connect_timeout=2.0)
            app = Sentinel(settings, registry=load_registry(registry_file))
            try:
                await app.sweep()
                with_outbox(app.store)
            finally:
                app.close()
        return DemoStore(folder, folder / "sentinel.db", registry_file)

    return asyncio.run(run())


@dataclass
class Exporter:
    url: str
    proc: subprocess.Popen[bytes]


def start_exporter(demo: DemoStore) -> Exporter:
    """`sentinel serve` in its own process, exactly as an operator runs it."""
    port = free_port(LOOPBACK)
    code = "import sys; from sentinel.cli.serve_cmd import serve; sys.exit(serve())"
    args = ["--listen", f"{LOOPBACK}:{port}", "--store", str(demo.store), "--registry", str(demo.registry)]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://{LOOPBACK}:{port}"
    wait_until("sentinel serve", lambda: http_get(url + "/-/healthy", 1)[0] == 200, proc=proc)
    return Exporter(url, proc)


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]

    def query(self, expr: str) -> dict[str, Any]:
        status, body = http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        answer: dict[str, Any] = json.loads(body)
        assert status == 200 and answer.get("status") == "success", f"{expr}: {status} {body[:500]!r}"
        return answer["data"]  # type: ignore[no-any-return]

    def series(self, expr: str) -> list[dict[str, Any]]:
        return list(self.query(expr)["result"])


def prometheus_config(exporter: str, probe_targets: list[str]) -> dict[str, Any]:
    address = exporter.removeprefix("http://")
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": "sentinel", "static_configs": [{"targets": [address]}]},
            {
                "job_name": "sentinel_probe",
                "metrics_path": "/probe",
                "params": {"module": ["http_2xx"]},
                "static_configs": [{"targets": probe_targets}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": address},
                ],
            },
        ],
    }


def start_prometheus(folder: Path, exporter: Exporter, probe_targets: list[str]) -> Prometheus:
    binary = require_tool("prometheus")
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(exporter.url, probe_targets)), encoding="utf-8")
    port = free_port(LOOPBACK)
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    prom = Prometheus(f"http://{LOOPBACK}:{port}", proc)
    wait_until("prometheus ready", lambda: http_get(prom.url + "/-/ready", 1)[0] == 200, proc=proc)
    # Two scrapes of each job, so every series has samples and rules have evaluated.
    wait_until(
        "prometheus scraping sentinel",
        lambda: len(prom.series('count_over_time(up{job=~"sentinel.*"}[1m]) >= 2')) == 1 + len(probe_targets),
        proc=proc,
    )
    return prom


@dataclass
class Stack:
    demo: DemoStore
    exporter: Exporter
    prometheus: Prometheus


PROBE_TARGETS = ["city-portal", "city-open-data"]


@contextlib.contextmanager
def running_metrics_stack(folder: Path) -> Iterator[Stack]:
    """Sweep the demo estate into a store in `folder`, serve it, and have Prometheus scrape it until exit."""
    require_tool("prometheus")
    demo = swept_demo_store(folder)
    exporter = start_exporter(demo)
    try:
        prom = start_prometheus(folder, exporter, PROBE_TARGETS)
        # assessed in the background: wait until Prometheus has it, so every test sees the same families
        wait_until("compliance scraped", lambda: prom.series("sentinel_compliance_ratio"), proc=prom.proc)
        try:
            yield Stack(demo, exporter, prom)
        finally:
            stop(prom.proc)
    finally:
        stop(exporter.proc)
