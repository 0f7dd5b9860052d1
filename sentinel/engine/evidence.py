"""The one builder of what a verdict shows: when, by which probe, the fields its rule read, and what the
rule's memory derived (`change.*`, `baseline.*`, `window.*`, flapping counts, how long a key was silent)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sentinel.engine.conditions import Getter
from sentinel.models import Observation


class Stamps:
    """`at.isoformat()`, remembered for the last `at`: the observations of one batch share their time, so one
    evaluation call formats it once. Made per call (it is the call's cache, not the engine's)."""

    __slots__ = ("_at", "_text")

    def __init__(self) -> None:
        self._at: datetime | None = None
        self._text = ""

    def of(self, at: datetime) -> str:
        if at is not self._at:
            self._at, self._text = at, at.isoformat()
        return self._text


def observed(
    fields: tuple[str, ...], get: Getter, obs: Observation, stamp: str, derived: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A present verdict on an observation: `stamp` is `obs.observed_at.isoformat()`; derived fields that are
    set win over observed ones of the same name."""
    ev: dict[str, Any] = {"observed_at": stamp, "probe": obs.probe}
    for name in fields:
        value = get(name)
        if value is not None:
            ev[name] = value
    if derived:
        ev.update({k: v for k, v in derived.items() if v is not None})
    return ev


def flapping(stamp: str, changes: int, within: int) -> dict[str, Any]:
    """A flapping companion's verdict: how often the outcome flipped in how many evaluations."""
    return {"observed_at": stamp, "changes": changes, "within": within}


def silence(last: datetime, silent: timedelta, after: timedelta, kinds: list[str]) -> dict[str, Any]:
    """An absence verdict: when the key was last seen and how long it has been silent."""
    return {
        "last_seen": last.isoformat(),
        "silent_for_s": int(silent.total_seconds()),
        "expected_within_s": int(after.total_seconds()),
        "kinds": kinds,
    }
