"""Read what `/metrics` reports straight from the store, aggregated in SQL so a scrape of a large estate stays cheap.

Every query groups by system id (and probe, severity...): labels stay bounded, and no URL, address or error text
ever leaves this module.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

# A probe succeeded when it could observe: no error observation. A closed port, even a high-risk one nobody
# declared, is a successful observation (issue 11: reading it as a failure made every healthy system alert).
_SUCCESS = "CASE WHEN status = 'ok' THEN 1 ELSE 0 END"

# Whether what the owner expects answered: observed, reachable, the page opened (no 4xx/5xx), declared ports
# open. Observations about ports nobody declared (the high-risk list the exposure and banner probes try) say
# nothing about reachability.
# Field-based, so probes added later (dns, icmp...) follow the same reading without changes here.
_REACHABLE = """CASE
    WHEN status != 'ok' THEN 0
    WHEN json_extract(data, '$.declared') = 0 THEN 1
    WHEN json_extract(data, '$.reachable') = 0 THEN 0
    WHEN json_extract(data, '$.available') = 0 THEN 0
    WHEN json_extract(data, '$.declared') = 1 AND json_extract(data, '$.state') != 'open' THEN 0
    ELSE 1 END"""

# Probes report their timing under different names; the slowest answer stands for the probe's duration.
_LATENCY_MS = "COALESCE(json_extract(data, '$.latency_ms'), json_extract(data, '$.rtt_ms'))"

_PROBES_SQL = f"""SELECT system_id, probe, MIN({_SUCCESS}), MIN({_REACHABLE}), MAX({_LATENCY_MS}), MAX(observed_at),
    COUNT(*) FROM observations_latest GROUP BY system_id, probe"""

_CERTS_SQL = """SELECT system_id, MIN(json_extract(data, '$."cert.not_after"')) FROM observations_latest
    WHERE kind = 'tls' AND status = 'ok' AND json_extract(data, '$."cert.not_after"') IS NOT NULL
    GROUP BY system_id"""

_FINDINGS_SQL = """SELECT system_id, severity, category, status, COUNT(*) FROM findings
    WHERE status IN ('open', 'acknowledged', 'rectified') GROUP BY system_id, severity, category, status"""


def _timestamp(text: str | None) -> float | None:
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


@dataclass(frozen=True)
class StoreSnapshot:
    probes: list[ProbeState] = field(default_factory=list)
    cert_expiry: dict[str, float] = field(default_factory=dict)
    findings: list[FindingCount] = field(default_factory=list)
    sweeps: SweepState = field(default_factory=lambda: SweepState(0, 0))


def read_probes(db: sqlite3.Connection) -> list[ProbeState]:
    return [
        ProbeState(
            system_id=sid,
            probe=probe,
            success=bool(ok),
            duration_seconds=None if latency is None else round(float(latency) / 1000.0, 6),
            observed_at=_timestamp(observed),
            observations=int(count),
            reachable=bool(reachable),
        )
        for sid, probe, ok, reachable, latency, observed, count in db.execute(_PROBES_SQL)
    ]


def read_cert_expiry(db: sqlite3.Connection) -> dict[str, float]:
    out: dict[str, float] = {}
    for sid, not_after in db.execute(_CERTS_SQL):
        ts = _timestamp(not_after)
        if ts is not None:
            out[sid] = ts
    return out


def read_findings(db: sqlite3.Connection) -> list[FindingCount]:
    return [FindingCount(*row) for row in db.execute(_FINDINGS_SQL)]


def read_sweeps(db: sqlite3.Connection) -> SweepState:
    finished, started = db.execute("SELECT COUNT(finished_at), COUNT(*) FROM sweeps").fetchone()
    last_started = db.execute("SELECT MAX(started_at) FROM sweeps").fetchone()[0]
    row = db.execute(
        "SELECT started_at, finished_at, summary FROM sweeps WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return SweepState(int(finished), int(started), last_started=_timestamp(last_started))
    start, end = _timestamp(row[0]), _timestamp(row[1])
    try:
        summary = json.loads(row[2] or "{}")
    except json.JSONDecodeError:
        summary = {}
    if not isinstance(summary, dict):
        summary = {}
    observations, errors = summary.get("observations"), summary.get("errors")
    return SweepState(
        finished_total=int(finished),
        started_total=int(started),
        last_started=_timestamp(last_started),
        last_success=end,
        last_duration_seconds=None if start is None or end is None else max(end - start, 0.0),
        last_observations=observations if isinstance(observations, int) else None,
        last_errors=errors if isinstance(errors, int) else None,
    )


def read_snapshot(db: sqlite3.Connection) -> StoreSnapshot:
    """One consistent read: a sweep committing mid-scrape cannot mix two sweeps into one exposition."""
    started_here = not db.in_transaction
    if started_here:
        db.execute("BEGIN")
    try:
        return StoreSnapshot(
            probes=read_probes(db),
            cert_expiry=read_cert_expiry(db),
            findings=read_findings(db),
            sweeps=read_sweeps(db),
        )
    finally:
        if started_here:
            db.execute("COMMIT")
