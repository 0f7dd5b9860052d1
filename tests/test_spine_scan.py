"""End to end on real loopback servers: registry → probes → rules → findings → store → CLI."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentinel.app import Sentinel
from sentinel.cli.main import main
from sentinel.config.settings import CollectorSettings, Settings
from sentinel.demo.estate import DemoEstate
from sentinel.models import FindingStatus
from tests.conftest import background_estate

NET = "127.78.0"


def _settings(folder: Path, ca: Path) -> dict[str, Any]:
    return {
        "registry": str(folder / "registry.yaml"),
        "store": str(folder / "s.db"),
        "collectors": {
            "tls": {"ca_file": str(ca)},
            "tls_scan": {"ca_file": str(ca)},
            "connect_timeout": 1.0,
            "per_target_rate": 50,
            "per_target_burst": 20,
        },
    }


@pytest.fixture
def estate(tmp_path: Path) -> Iterator[tuple[DemoEstate, Path, asyncio.AbstractEventLoop]]:
    """The demo estate on loopback, and a settings file that points Sentinel at it."""
    with background_estate(tmp_path, NET) as (est, loop):
        (tmp_path / "registry.yaml").write_text(est.registry_yaml(), encoding="utf-8")
        assert est.ca is not None
        config = tmp_path / "sentinel.yaml"
        config.write_text(yaml.safe_dump(_settings(tmp_path, est.ca.files.cert)), encoding="utf-8")
        yield est, config, loop


def _scan_json(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["scan", "--config", str(config), "--format", "json", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_scan_finds_exactly_the_planted_problems(
    estate: tuple[DemoEstate, Path, asyncio.AbstractEventLoop], capsys: pytest.CaptureFixture[str]
) -> None:
    est, config, _ = estate
    code, findings = _scan_json(config, capsys)
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
    estate: tuple[DemoEstate, Path, asyncio.AbstractEventLoop], capsys: pytest.CaptureFixture[str]
) -> None:
    est, config, loop = estate
    _scan_json(config, capsys)
    # Fix one problem for real: the exposed database port is closed.
    for server in list(est._servers):
        if any(s.getsockname()[1] == est.db_port for s in server.sockets):
            loop.call_soon_threadsafe(server.close)
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0.1), loop).result(5)
    code, findings = _scan_json(config, capsys, "--fail-on", "critical")
    assert code == 1  # the expired certificate is still critical
    by_rule = {f["rule_id"]: f for f in findings}
    assert by_rule["tls_cert_not_expired"]["occurrences"] == 2
    assert by_rule["port_high_risk_closed"]["status"] == "resolved"
    assert main(["findings", "list", "--config", str(config), "--status", "resolved", "--format", "json"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert [f["rule_id"] for f in resolved] == ["port_high_risk_closed"]


def test_findings_commands_record_who_and_why(
    estate: tuple[DemoEstate, Path, asyncio.AbstractEventLoop], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config, _ = estate
    _, findings = _scan_json(config, capsys)
    target = next(f for f in findings if f["rule_id"] == "http_redirects_to_https")
    fid = target["id"][:10]
    base = ["--config", str(config)]
    assert main(["findings", "ack", fid, "--reason", "ticket OPS-7", "--by", "alice", *base]) == 0
    assert "now acknowledged (by alice: ticket OPS-7)" in capsys.readouterr().out
    assert main(["findings", "show", fid, "--format", "json", *base]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "acknowledged"
    assert main(["findings", "ack", fid, "--reason", "again", *base]) != 0  # acknowledged cannot be acknowledged
    assert "cannot acknowledge a finding that is acknowledged" in capsys.readouterr().err
    assert main(["findings", "suppress", fid, "--reason", "accepted", "--until", "2999-01-01", *base]) == 0
    capsys.readouterr()
    assert main(["findings", "history", fid, "--format", "json", *base]) == 0
    history = json.loads(capsys.readouterr().out)
    assert [(h["from_status"], h["to_status"], h["actor"]) for h in history] == [
        (None, "open", "sentinel"),
        ("open", "acknowledged", "alice"),
        ("acknowledged", "suppressed", history[2]["actor"]),
    ]
    assert main(["findings", "list", "--format", "csv", *base]) == 0
    csv_out = capsys.readouterr().out
    assert csv_out.startswith("id,rule_id,title,severity") and "tls_cert_not_expired" in csv_out
    assert main(["findings", "show", "zzzz", *base]) == 2


def test_dry_run_sends_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A listener counts connections: the dry run must not make one, and must list the probes it would send."""
    listener = socket.socket()
    listener.bind((f"{NET}.90", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    (tmp_path / "r.yaml").write_text(
        yaml.safe_dump(
            {
                "scope": {"allow": [f"{NET}.0/24"]},
                "systems": [
                    {
                        "id": "x",
                        "name": "X",
                        "owner": {"department": "IT"},
                        "tier": "city",
                        "mlps_level": 2,
                        "endpoints": [{"url": f"https://{NET}.90:{port}/"}],
                    }
                ],
            }
        )
    )
    code = main(["scan", "--registry", str(tmp_path / "r.yaml"), "--store", str(tmp_path / "s.db"), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"https://{NET}.90:{port}/" in out and "tcp_ports" in out and "tls" in out and "Budget" in out
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()
    assert not (tmp_path / "s.db").exists()


def test_out_of_scope_names_are_never_contacted(tmp_path: Path) -> None:
    """'localhost' is allowed as a name but resolves to 127.0.0.1, outside the CIDR scope: no connection, a finding."""
    reg = tmp_path / "r.yaml"
    reg.write_text(
        yaml.safe_dump(
            {
                "scope": {"allow": [f"{NET}.0/24", "localhost"]},
                "systems": [
                    {
                        "id": "lh",
                        "name": "LH",
                        "owner": {"department": "IT"},
                        "tier": "city",
                        "mlps_level": 2,
                        "endpoints": [{"url": "http://localhost:9/"}],
                    }
                ],
            }
        )
    )
    app = Sentinel(Settings(registry=reg, store=tmp_path / "s.db", collectors=CollectorSettings(connect_timeout=1)))
    outcome = app.scan()
    assert outcome.observations and all(o.status.value == "error" for o in outcome.observations)
    assert {o.data.get("error_kind") for o in outcome.observations} == {"out_of_scope"}
    found = app.store.list_findings(statuses=[FindingStatus.OPEN])
    assert {f.rule_id for f in found} == {"scope_target_in_scope"}
    assert app.store.sweeps()[0]["summary"] is not None
    app.close()


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workdir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "tls_cert_not_expired" not in out  # titles, not ids, are shown to people
    assert "TLS certificate has expired" in out and "What to run next" in out
    assert (tmp_path / "demo" / "sentinel.db").exists()
