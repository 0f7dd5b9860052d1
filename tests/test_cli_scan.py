"""`sentinel scan` end to end on the demo estate's real loopback servers: registry → probes → rules → findings →
store → JSON; a second sweep dedupes and resolves what was fixed; `--dry-run` sends nothing."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from sentinel.cli.main import main
from sentinel.demo.estate import DemoEstate
from tests.support.estate import SCAN_ESTATE_NET, scan_json
from tests.support.registry_files import system_doc, write_registry_doc

NET = SCAN_ESTATE_NET


def test_scan_finds_exactly_the_planted_problems(
    scan_estate: tuple[DemoEstate, Path, asyncio.AbstractEventLoop], capsys: pytest.CaptureFixture[str]
) -> None:
    est, config, _ = scan_estate
    code, findings = scan_json(config, capsys)
    assert code == 0
    got: dict[str, set[str]] = {}
    for f in findings:
        got.setdefault(f["system_id"], set()).add(f["rule_id"])
    planted = {
        "city-portal": {"tls_cert_not_expired", "tls_cert_trusted_for_host", "https_hsts_enabled"},
        "district-portal": {"http_redirects_to_https"},
        "street-records": {"port_high_risk_closed"},
        "district-permits": {"endpoint_reachable"},
    }
    for system, rules in planted.items():
        assert rules <= got.get(system, set()), (system, got.get(system))
    # The healthy system: nothing but OCSP stapling, which Python's TLS server cannot offer.
    assert got.get("city-open-data", set()) <= {"tls_ocsp_stapling_enabled"}, got.get("city-open-data")
    # the healthy system produces nothing; each finding carries the JSON contract of the issue
    required = {
        "id",
        "rule_id",
        "title",
        "severity",
        "category",
        "system_id",
        "target",
        "status",
        "first_seen",
        "last_seen",
        "occurrences",
        "evidence",
        "controls",
        "remediation",
    }
    for f in findings:
        assert required <= f.keys() and f["status"] == "open" and f["occurrences"] == 1
        assert isinstance(f["evidence"], dict) and isinstance(f["controls"], list) and f["remediation"]
    expired = next(f for f in findings if f["rule_id"] == "tls_cert_not_expired")
    assert expired["severity"] == "critical" and expired["evidence"]["cert.days_to_expiry"] < -11
    port = next(f for f in findings if f["rule_id"] == "port_high_risk_closed")
    assert port["target"] == f"{NET}.30:{est.db_port}/tcp"
    assert "mlps:8.1.4.4 b)" in port["controls"]


def test_second_sweep_dedupes_and_a_fix_resolves(
    scan_estate: tuple[DemoEstate, Path, asyncio.AbstractEventLoop], capsys: pytest.CaptureFixture[str]
) -> None:
    est, config, loop = scan_estate
    scan_json(config, capsys)
    # Fix one problem for real: the exposed database port is closed.
    for server in list(est._servers):
        if any(s.getsockname()[1] == est.db_port for s in server.sockets):
            loop.call_soon_threadsafe(server.close)
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0.1), loop).result(5)
    code, findings = scan_json(config, capsys, "--fail-on", "critical")
    assert code == 1  # the expired certificate is still critical
    by_rule = {f["rule_id"]: f for f in findings}
    assert by_rule["tls_cert_not_expired"]["occurrences"] == 2
    assert by_rule["port_high_risk_closed"]["status"] == "resolved"
    assert main(["findings", "list", "--config", str(config), "--status", "resolved", "--format", "json"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert [f["rule_id"] for f in resolved] == ["port_high_risk_closed"]


def test_dry_run_sends_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A listener counts connections: the dry run must not make one, and must list the probes it would send."""
    listener = socket.socket()
    listener.bind((f"{NET}.90", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    write_registry_doc(
        tmp_path / "r.yaml", [f"{NET}.0/24"], system_doc("x", "X", [{"url": f"https://{NET}.90:{port}/"}])
    )
    code = main(["scan", "--registry", str(tmp_path / "r.yaml"), "--store", str(tmp_path / "s.db"), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"https://{NET}.90:{port}/" in out and "tcp_ports" in out and "tls" in out and "Budget" in out
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    assert not (tmp_path / "s.db").exists()
