"""Settings files for the tests that run Sentinel as a command (`sentinel run`, `scan`, the web view's lab)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def tcp_only_collectors(**extra: Any) -> dict[str, Any]:
    """`collectors:` for a loopback estate that only the tcp_ports probe sweeps, fast and unthrottled."""
    return {"probes": ["tcp_ports"], "connect_timeout": 0.5, "per_target_rate": 50, "per_target_burst": 20, **extra}


def write_config(folder: Path, registry: Path, **sections: Any) -> Path:
    """`folder`/sentinel.yaml: the registry, a store beside it (s.db), and the given top-level sections."""
    config = folder / "sentinel.yaml"
    settings = {"registry": str(registry), "store": str(folder / "s.db"), **sections}
    config.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    return config
