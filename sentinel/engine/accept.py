"""An operator accepting a finding's changed value as the rule's new baseline (issue 11).

A `change` or `baseline` rule never relearns away a problem it is reporting, so a change that is wanted
(a page the editors published, a new certificate) ends only this way: the value the finding shows becomes
the learned one in the rule's engine state. `FindingTracker.act(..., ACCEPT_BASELINE)` calls this inside
the transaction that resolves the finding and appends the audit event, so both happen or neither.
The engine says only that there is no baseline to accept (`NoBaselineError`); the tracker, a later stage,
turns that into the lifecycle's refusal.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sentinel.engine.features import accept_candidate
from sentinel.engine.state import ensure_schema
from sentinel.errors import SentinelError
from sentinel.models import Finding

if TYPE_CHECKING:
    from sentinel.store import SqliteStore

MAX_SHOWN = 80  # characters of the accepted value quoted in the audit log


class NoBaselineError(SentinelError):
    """The finding's rule keeps no accepted value for its target (not a change/baseline rule, nothing recorded)."""


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def accept_baseline(store: SqliteStore, finding: Finding, now: datetime) -> str:
    """Make the finding's current value the learned one; returns what was accepted (for the audit log).

    Raises NoBaselineError when the finding's rule keeps no baseline for its target."""
    ensure_schema(store)
    key = (finding.rule_id, finding.system_id, finding.target)
    row = store.connection.execute(
        "SELECT state FROM engine_state WHERE rule_id = ? AND system_id = ? AND target = ?", key
    ).fetchone()
    try:
        state = json.loads(row[0]) if row is not None else None
    except json.JSONDecodeError:
        state = None
    if not isinstance(state, dict) or not isinstance(state.get("chg") or state.get("bl"), dict):
        raise NoBaselineError(
            f"rule {finding.rule_id} keeps no baseline for {finding.target}: only findings of 'change' or "
            "'baseline' rules can accept a new baseline (use resolve or suppress)"
        )
    if isinstance(state.get("chg"), dict):
        chg: dict[str, Any] = state["chg"]
        value = finding.evidence.get("change.current", chg.get("c"))
        if value is None:
            raise NoBaselineError(f"{finding.target}: no changed value recorded to accept")
        accept_candidate(chg, value, now)
        accepted = _shown(value)
    else:
        # A new level: the baseline learns again from the next samples, and says nothing until it has.
        state["bl"] = {}
        accepted = "the current level (the baseline relearns from the next samples)"
    state["active"], state["pos"], state["neg"] = False, 0, 0  # the reported problem is over: counters restart
    store.connection.execute(
        "INSERT OR REPLACE INTO engine_state (rule_id, system_id, target, state, updated_at) VALUES (?, ?, ?, ?, ?)",
        (*key, json.dumps(state, ensure_ascii=False, default=str), now.astimezone(UTC).isoformat()),
    )
    return accepted
