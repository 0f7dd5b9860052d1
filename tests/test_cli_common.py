"""cli/common.py: commands that read what earlier runs recorded refuse a store that does not exist."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sentinel.cli.main import main

EXAMPLE_REGISTRY = Path(__file__).resolve().parent.parent / "docs" / "examples" / "registry.yaml"

READING_COMMANDS = [
    ["findings", "list"],
    ["findings", "show", "5505133c1a04"],
    ["findings", "history", "5505133c1a04"],
    ["alerts"],
    ["compliance", "status", "--registry", str(EXAMPLE_REGISTRY)],
    ["report", "compliance", "--registry", str(EXAMPLE_REGISTRY), "-o", "report.html"],
]


@pytest.mark.parametrize("command", READING_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_reading_command_refuses_a_missing_store(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "x.db"
    assert main([*command, "--store", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"{missing}: no such store" in err and "Traceback" not in err
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize("command", READING_COMMANDS[:4], ids=lambda c: " ".join(c[:2]))
def test_no_store_is_created_in_an_empty_folder(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SENTINEL_STORE", raising=False)
    assert main(command) == 2
    assert "sentinel.db: no such store" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []
