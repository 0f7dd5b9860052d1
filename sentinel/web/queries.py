"""Read models for the web view and its API, always filtered by what the user may see."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sentinel.models import Finding, FindingStatus, Severity
from sentinel.registry.models import Registry, System
from sentinel.store import SqliteStore
from sentinel.web.auth import User

REACHABILITY_KINDS = ("host", "http", "icmp")


def visible_systems(registry: Registry, user: User) -> list[System]:
    return [s for s in registry.systems if user.sees(s.owner.department)]


@dataclass
class SystemHealth:
    system: System
    state: str  # up | down | unknown
    open_by_severity: Counter[str] = field(default_factory=Counter)
    certs_expiring: list[dict[str, Any]] = field(default_factory=list)


def system_health(store: SqliteStore, systems: list[System]) -> dict[str, SystemHealth]:
    ids = [s.id for s in systems]
    health = {s.id: SystemHealth(s, "unknown") for s in systems}
    for obs in store.latest_observations():
        h = health.get(obs["system_id"])
        if h is None:
            continue
        data = obs["data"]
        if obs["kind"] in REACHABILITY_KINDS and "reachable" in data:
            if data["reachable"] is False:
                h.state = "down"
            elif h.state == "unknown":
                h.state = "up"
        days = data.get("cert.days_to_expiry")
        if obs["kind"] == "tls" and isinstance(days, int | float) and days < 30:
            h.certs_expiring.append({"target": obs["target"], "days": days, "not_after": data.get("cert.not_after")})
    if ids:
        for f in store.list_findings(statuses=[FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED], system_ids=ids):
            health[f.system_id].open_by_severity[f.severity.value] += 1
    return health


@dataclass
class GroupRow:
    name: str
    systems: int = 0
    up: int = 0
    down: int = 0
    unknown: int = 0
    open_by_severity: Counter[str] = field(default_factory=Counter)
    certs_expiring: int = 0


def group_rows(health: dict[str, SystemHealth], key: str) -> list[GroupRow]:
    rows: dict[str, GroupRow] = {}
    for h in health.values():
        name = h.system.tier.value if key == "tier" else h.system.owner.department
        row = rows.setdefault(name, GroupRow(name))
        row.systems += 1
        setattr(row, h.state, getattr(row, h.state) + 1)
        row.open_by_severity.update(h.open_by_severity)
        row.certs_expiring += len(h.certs_expiring)
    order = {"city": 0, "district": 1, "street": 2}
    return sorted(rows.values(), key=lambda r: (order.get(r.name, 9), r.name))


def findings_for(
    store: SqliteStore,
    registry: Registry,
    user: User,
    statuses: list[FindingStatus] | None = None,
    min_severity: Severity | None = None,
    system_id: str | None = None,
    department: str | None = None,
    tier: str | None = None,
    text: str | None = None,
) -> list[Finding]:
    systems = [
        s
        for s in visible_systems(registry, user)
        if (system_id is None or s.id == system_id)
        and (department is None or s.owner.department == department)
        and (tier is None or s.tier.value == tier)
    ]
    if not systems:
        return []
    found = store.list_findings(statuses=statuses, min_severity=min_severity, system_ids=[s.id for s in systems])
    if text:
        needle = text.lower()
        found = [f for f in found if needle in f.title.lower() or needle in f.target.lower() or needle in f.rule_id]
    return found


def trend(
    store: SqliteStore, system_ids: list[str], days: int = 14, now: datetime | None = None
) -> list[dict[str, Any]]:
    """New and resolved findings per day over the last `days` days."""
    end = (now or datetime.now(UTC)).date()
    start = end - timedelta(days=days - 1)
    new: Counter[str] = Counter()
    resolved: Counter[str] = Counter()
    if system_ids:
        for f in store.list_findings(system_ids=system_ids):
            if f.first_seen.date() >= start:
                new[f.first_seen.date().isoformat()] += 1
            if f.resolved_at and f.resolved_at.date() >= start:
                resolved[f.resolved_at.date().isoformat()] += 1
    out = []
    for i in range(days):
        day = (start + timedelta(days=i)).isoformat()
        out.append({"day": day, "new": new[day], "resolved": resolved[day]})
    return out


def departments(systems: list[System]) -> list[str]:
    return sorted({s.owner.department for s in systems})


def by_department(systems: list[System]) -> dict[str, list[System]]:
    out: dict[str, list[System]] = defaultdict(list)
    for s in systems:
        out[s.owner.department].append(s)
    return out
