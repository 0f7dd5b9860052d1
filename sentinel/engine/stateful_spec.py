"""Schema of the stateful rule extensions: `for`/`clear_after` hysteresis, flapping, change, baseline,
window and absence. Pure data; the behaviour lives in `sentinel.engine.anomaly`."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """`90`, `"90s"`, `"15m"`, `"2h"`, `"1d"`, `"1w"` → timedelta (a bare number is seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and float(match.group(1)) > 0:
            return timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2)])
    raise ValueError(f"{value!r} is not a duration (a positive number of seconds, or e.g. '90s', '15m', '2h', '1d')")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Flapping(Spec):
    """A target whose raw outcome flips at least `changes` times within its last `within` evaluations."""

    changes: int = Field(default=4, ge=2, le=100)
    within: int = Field(default=10, ge=3, le=100)

    @model_validator(mode="after")
    def _fits(self) -> Flapping:
        if self.changes >= self.within:
            raise ValueError("'changes' must be smaller than 'within'")
        return self


class Change(Spec):
    """Compare `field` with the value learned for this target; derived fields `change.*`."""

    field: str = Field(min_length=1)
    keep: list[str] = Field(default_factory=list, max_length=8)  # fields of the previous observation to expose
    diff: str | None = None  # a text field to diff (old vs new) into `change.diff` when the value changes
    learn: int = Field(default=1, ge=1, le=10_000)  # observations absorbed into the learned value (lists: union)
    relearn_after: int = Field(default=0, ge=0, le=100_000)  # accept a new value after N stable sweeps (0: never)


class Baseline(Spec):
    """A per-target baseline of a numeric (or boolean, read as 0/1) field; derived fields `baseline.*`."""

    field: str = Field(min_length=1)
    method: Literal["ewma", "mad"] = "ewma"
    learn: int = Field(default=20, ge=3, le=10_000)  # samples before the baseline is trusted
    alpha: float = Field(default=0.1, gt=0, lt=1)  # EWMA weight of the newest sample
    window: int = Field(default=50, ge=5, le=500)  # samples kept for the robust (median/MAD) method
    min_spread: float = Field(default=0.0, ge=0)  # floor under the spread, so a flat series is not hair-trigger
    outliers: Literal["exclude", "include"] = "exclude"  # include: every sample feeds the level (rates, 0/1)


class Window(Spec):
    """Per-day counters of how often the condition held; the verdict is the ratio over `days` days."""

    days: int = Field(default=7, ge=1, le=90)
    min_per_day: int = Field(default=20, ge=1, le=100_000)
    ratio_at_least: float = Field(gt=0, le=1)


class Absence(Spec):
    """An expected observation that stops arriving: nothing (or nothing `ok`) for longer than `after`."""

    after: Duration
    scope: Literal["target", "system", "district", "tier"] = "target"
    require_ok: bool = False  # count only observations with status ok as "arriving"


STATEFUL_KEYS = ("change", "baseline", "window", "absence")
