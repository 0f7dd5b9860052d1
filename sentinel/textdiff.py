"""Bounded unified diffs of two texts: what a changed page or value shows (web collector, change rules).

A bottom-level module (standard library only) so that collectors and the rule engine share it without
importing each other."""

from __future__ import annotations

import difflib


def diff_lines(old: str, new: str, context: int = 2, max_lines: int = 200) -> list[str]:
    """A unified diff of two normalised texts (for the change engine to show), at most `max_lines` lines."""
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "baseline", "current", n=context, lineterm=""))
    if len(diff) > max_lines:
        more = len(diff) - max_lines
        diff = [*diff[:max_lines], f"... {more} more diff lines"]
    return diff
