"""What the engine hands the findings tracker: one rule's outcome on one target, in one evaluation."""

from __future__ import annotations

from typing import Any, NamedTuple

from sentinel.engine.rule import Rule


class Verdict(NamedTuple):
    """The outcome of one rule on one target of one system, in one sweep (immutable, cheap to make)."""

    rule: Rule
    system_id: str
    target: str
    present: bool | None  # True: the problem was seen; False: checked and not seen; None: observed, could not tell
    evidence: dict[str, Any] = {}  # noqa: RUF012 -- never mutated; absent verdicts share it


NO_EVIDENCE: dict[str, Any] = Verdict._field_defaults["evidence"]  # the one shared by absent and unknown verdicts
#: Builds a Verdict without the named tuple's Python-level __new__: `new_verdict(Verdict, (...))` (hot path).
new_verdict = tuple.__new__
