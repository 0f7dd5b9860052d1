"""docs/deploy/: the systemd unit is hardened and passes `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.netns import require

ROOT = Path(__file__).resolve().parent.parent


def test_systemd_unit_is_hardened_and_verifies(tmp_path: Path) -> None:
    unit = (ROOT / "docs/deploy/sentinel.service").read_text()
    for setting in (
        "User=sentinel",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_NET_RAW",
    ):
        assert setting in unit
    tool = shutil.which("systemd-analyze")
    require(tool is not None, "needs systemd-analyze (package systemd)")
    assert tool is not None
    # verify with an executable that exists here; everything else is checked as shipped
    copy = tmp_path / "sentinel.service"
    copy.write_text(unit.replace("/usr/local/bin/sentinel run --config /etc/sentinel/sentinel.yaml", "/bin/true"))
    result = subprocess.run([tool, "verify", str(copy)], check=False, capture_output=True, text=True, timeout=60)
    problems = [ln for ln in result.stderr.splitlines() if "sentinel.service" in ln and "Documentation" not in ln]
    assert not problems, result.stderr
