"""Typed rows the store's read methods return (what /metrics and `/probe` need), so no reader runs SQL of its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


def timestamp(text: str | None) -> float | None:
    """An ISO time as epoch seconds; None for missing or unreadable values."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ProbeState:
    system_id: str
    probe: str
    success: bool  # the probe could observe (no error observation)
    duration_seconds: float | None
    observed_at: float | None
    observations: int
    reachable: bool = True  # every declared thing it looked at answered (what `sentinel_system_up` reads)


@dataclass(frozen=True, slots=True)
class FindingCount:
    system_id: str
    severity: str
    category: str
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class SweepState:
    """The last finished sweep, and how many sweeps ever finished or were started."""

    finished_total: int
    started_total: int
    last_started: float | None = None
    last_success: float | None = None
    last_duration_seconds: float | None = None
    last_observations: int | None = None
    last_errors: int | None = None


@dataclass(frozen=True, slots=True)
class CaptureWindow:
    """The latest live-capture window on one interface: what the kernel received and dropped."""

    interface: str
    received: int
    dropped: int
    observed_at: float | None


@dataclass(frozen=True, slots=True)
class ObservationRow:
    """One latest observation as stored (`data` still JSON text: the caller decides whether to parse it)."""

    kind: str
    target: str
    observed_at: str
    status: str
    data: str
    #: who observed it ('' for a row recorded before sites, until the store's instance adopts it)
    site: str = ""
    vantage: str = ""


@dataclass(frozen=True)
class StoreSnapshot:
    probes: list[ProbeState] = field(default_factory=list)
    cert_expiry: dict[str, float] = field(default_factory=dict)
    findings: list[FindingCount] = field(default_factory=list)
    sweeps: SweepState = field(default_factory=lambda: SweepState(0, 0))
    captures: list[CaptureWindow] = field(default_factory=list)
