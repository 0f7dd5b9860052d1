"""runtime/monitor.py, `sentinel run` as a real process: it sweeps, serves, reloads on SIGHUP (rejecting bad files),
stops on SIGTERM; analyses live traffic in windows; schedules port discovery next to the sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentinel.demo.estate import DemoEstate, free_port
from sentinel.store import SqliteStore
from tests.netns import require_root
from tests.support.estate import background_estate, demo_collectors, write_registry
from tests.support.registry_files import system_doc, write_registry_doc
from tests.support.settings_files import tcp_only_collectors, write_config

NET = "127.80.0"


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[DemoEstate]:
    with background_estate(tmp_path / "estate", NET) as (est, _):
        yield est


def get(url: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except OSError:
        return 0, None


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def start(config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`sentinel run --config CONFIG [EXTRA]`, logging ECS JSON lines to `log`."""
    env = {**os.environ, "SENTINEL_LOG_FORMAT": "json"}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sentinel", "run", "--config", str(config), *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def test_run_sweeps_reloads_and_stops_cleanly(estate: DemoEstate, tmp_path: Path) -> None:
    registry = write_registry(estate, tmp_path)
    port = free_port("127.0.0.1")
    config = write_config(
        tmp_path,
        registry,
        collectors=demo_collectors(estate),
        run={"intervals": {"tcp_ports": 4, "http": 2, "tls": 4}, "slice_seconds": 2, "reload_check_every": 1},
        web={"users": [{"name": "alice", "role": "operator", "token": "t1"}]},
        serve={"listen": f"127.0.0.1:{port}"},
    )
    log = tmp_path / "run.log"
    proc = start(config, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 30, "readiness")
        assert get(f"{base}/api/findings")[0] == 401

        def rules_seen() -> set[str]:
            status, body = get(f"{base}/api/findings", "t1")
            return {f["rule_id"] for f in body} if status == 200 else set()

        wait_for(
            lambda: {"tls_cert_not_expired", "http_redirects_to_https", "endpoint_reachable"} <= rules_seen(),
            40,
            "the planted findings",
        )

        # A broken registry on SIGHUP is rejected; the running configuration stays in force.
        good = registry.read_text(encoding="utf-8")
        registry.write_text(good + "  - id: [broken\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in log.read_text(), 15, "the rejection message")
        assert proc.poll() is None and get(f"{base}/readyz")[0] == 200
        # A valid change is picked up from the file change alone (no signal).
        doc = yaml.safe_load(good)
        doc["systems"] = [s for s in doc["systems"] if s["id"] != "district-permits"]
        registry.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        wait_for(lambda: "configuration reloaded: 4 systems" in log.read_text(), 15, "the reload")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=35) == 0
        assert time.monotonic() - started < 30
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines and all({"@timestamp", "log.level", "message", "ecs.version"} <= line.keys() for line in lines)
    # A restart re-opens nothing: every finding keeps its single 'first detected' event.
    store = SqliteStore(tmp_path / "s.db")
    before = {f.id: len(store.finding_events(f.id)) for f in store.list_findings()}
    store.close()
    proc = start(config, log)
    try:
        wait_for(lambda: get(f"{base}/readyz")[0] == 200, 30, "readiness after restart")
        time.sleep(3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=35)
    store = SqliteStore(tmp_path / "s.db")
    after = {f.id: len(store.finding_events(f.id)) for f in store.list_findings() if f.id in before}
    assert after == before


def test_run_analyses_live_traffic_when_configured(tmp_path: Path) -> None:
    """With run.sniff set, the monitor captures on an interface in windows and logs what the detectors saw."""
    require_root()
    lo = system_doc("lo-sys", "LO", [{"host": "127.82.0.1", "ports": [9]}])
    registry = write_registry_doc(tmp_path / "registry.yaml", ["127.0.0.0/8"], lo)
    sniff = {"iface": "lo", "window": 5}
    run = {"intervals": {"tcp_ports": 30}, "slice_seconds": 30, "sniff": sniff}
    config = write_config(tmp_path, registry, collectors=tcp_only_collectors(), run=run)
    log = tmp_path / "run.log"
    proc = start(config, log, "--no-listen")
    try:
        wait_for(lambda: "traffic on lo:" in log.read_text(), 30, "a traffic window")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=35) == 0
    window = next(json.loads(line) for line in log.read_text().splitlines() if "traffic on lo:" in line)
    assert window["log.level"] == "info" and "packets" in window["message"]


def test_run_discovers_an_undeclared_open_port(tmp_path: Path) -> None:
    """`sentinel run` schedules port discovery (run.extra_probes, default [port_discovery]) on its own interval
    next to the sweep's probes, and an open port the registry does not declare becomes `port_undeclared_open`."""
    import socket

    address, closed = "127.83.0.1", 9
    listeners = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((address, 0))
        sock.listen(64)  # the kernel completes handshakes into the backlog: enough for both scan methods
        listeners.append(sock)
    declared, undeclared = (int(s.getsockname()[1]) for s in listeners)
    discovery = system_doc("disc-sys", "Discovery", [{"host": address, "ports": [declared]}], mlps_level=3)
    registry = write_registry_doc(tmp_path / "registry.yaml", ["127.83.0.0/24"], discovery)
    collectors = tcp_only_collectors(port_discovery={"ports": sorted({declared, undeclared, closed})})
    # run.extra_probes is left at its default: port discovery must be scheduled without being asked
    run = {"intervals": {"tcp_ports": 60, "port_discovery": 2}, "slice_seconds": 2}
    config = write_config(tmp_path, registry, collectors=collectors, run=run)
    log = tmp_path / "run.log"
    proc = start(config, log, "--no-listen")

    def undeclared_findings() -> list[Any]:
        store = SqliteStore(tmp_path / "s.db")
        try:
            return [f for f in store.list_findings() if f.rule_id == "port_undeclared_open"]
        finally:
            store.close()

    try:
        wait_for(lambda: (tmp_path / "s.db").exists() and bool(undeclared_findings()), 40, "the discovery finding")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=35) == 0
        for sock in listeners:
            sock.close()
    [finding] = undeclared_findings()
    assert finding.system_id == "disc-sys" and finding.target == address
    assert finding.evidence.get("undeclared_open") == [undeclared], finding.evidence
    assert finding.evidence.get("declared_ports") == [declared]
