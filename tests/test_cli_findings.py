"""`sentinel findings` on findings of a real scan: ack, show, suppress, history and list record who and why."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sentinel.cli.main import main
from sentinel.demo.estate import DemoEstate
from tests.support.estate import scan_json


def test_findings_commands_record_who_and_why(
    scan_estate: tuple[DemoEstate, Path, asyncio.AbstractEventLoop], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config, _ = scan_estate
    _, findings = scan_json(config, capsys)
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
