"""A sink receives each sweep's outcome after the store has recorded it (the store stays the truth)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sentinel.findings.tracker import ApplyResult
from sentinel.models import Observation


@dataclass(frozen=True)
class SweepOutcome:
    sweep_id: int
    started_at: datetime
    finished_at: datetime
    observations: list[Observation]
    changes: ApplyResult


class Sink(Protocol):
    name: str

    def publish(self, outcome: SweepOutcome) -> None: ...

    def close(self) -> None: ...
