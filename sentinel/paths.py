"""Where the shipped rules live: the source tree's `rules/`, or `share/sentinel/rules` when installed."""

from __future__ import annotations

import sys
from pathlib import Path


def shipped_rules_dir() -> Path:
    source_tree = Path(__file__).resolve().parents[1] / "rules"
    if source_tree.is_dir():
        return source_tree
    return Path(sys.prefix) / "share" / "sentinel" / "rules"
