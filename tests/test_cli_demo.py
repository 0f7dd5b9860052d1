"""`sentinel demo`: the whole flow on its loopback estate, shown to people by rule titles."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.cli.main import main


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workdir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "tls_cert_not_expired" not in out  # titles, not ids, are shown to people
    assert "TLS certificate has expired" in out and "What to run next" in out
    assert (tmp_path / "demo" / "sentinel.db").exists()
