"""`config show` and `scan --dry-run` refuse a shared-alias bomb under `sinks.<name>` quickly, at FILE:LINE."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.yaml_bombs import shared_alias_bomb

EXAMPLE_REGISTRY = Path(__file__).resolve().parent.parent / "docs" / "examples" / "registry.yaml"


def _sentinel(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from sentinel.cli.main import main; sys.exit(main(sys.argv[1:]))"
    try:
        return subprocess.run(
            [sys.executable, "-c", code, *args], cwd=cwd, check=False, capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"sentinel {' '.join(args)} did not finish within 20 s")


@pytest.mark.parametrize("command", [["config", "show"], ["config", "show", "--format", "json"], ["scan", "--dry-run"]])
def test_alias_bomb_under_a_sink_exits_2_at_file_and_line(tmp_path: Path, command: list[str]) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        f"registry: {EXAMPLE_REGISTRY}\nstore: {tmp_path / 's.db'}\nsinks:\n  jsonl:\n"
        + shared_alias_bomb(indent="    "),
        encoding="utf-8",
    )
    started = time.monotonic()
    done = _sentinel(*command, "--config", str(bomb), cwd=tmp_path)
    assert time.monotonic() - started < 10
    assert done.returncode == 2, done.stderr[-2000:]
    assert re.search(r"bomb\.yaml:\d+: aliases expand to more than", done.stderr), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and done.stdout == ""
