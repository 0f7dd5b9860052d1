"""Read models for the web view and its API, always filtered by what the user may see.

Everything here is an aggregate or a page computed by the store in SQL: an estate of 1,354 systems and
30,000 findings is never loaded whole (issue 13: the overview took 3.8 s, the alerts page weighed 2.7 MB).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sentinel.findings.policy import FindingsSettings
from sentinel.models import Finding, FindingStatus, Severity
from sentinel.models.finding import ACTIVE_STATUSES
from sentinel.registry.models import Registry, System
from sentinel.store import SqliteStore
from sentinel.store.sqlite import FindingQuery
from sentinel.web.auth import Permission, User

TIERS = ("city", "district", "street")
SEVERITY_ORDER = [s.value for s in reversed(Severity)]
#: what the overview lists under "changed in the last 24 h": (key, rule ids or None, categories or None)
CHANGE_GROUPS: list[tuple[str, tuple[str, ...] | None, tuple[str, ...] | None]] = [
    ("new_exposures", None, ("exposure",)),
    ("newly_open_ports", ("port_newly_open", "port_undeclared_open"), None),
    ("defacements", ("web_content_changed", "web_no_sensitive_keywords"), None),
    ("hidden_links", ("web_no_hidden_gambling_adult_links",), None),
]
#: risk weight of one active finding by severity (the top-risks list multiplies by the MLPS level)
RISK_WEIGHT = {"critical": 40, "high": 10, "medium": 3, "low": 1, "info": 0}
AGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


def visible_systems(registry: Registry, user: User) -> list[System]:
    return [s for s in registry.systems if user.sees(s.owner.department)]


def _scope(registry: Registry, user: User) -> tuple[list[System], list[str] | None]:
    """The user's systems, and the system filter for SQL (None: everything, for users who see the whole estate)."""
    systems = visible_systems(registry, user)
    return systems, None if user.can(Permission.VIEW_ALL) else [s.id for s in systems]


@dataclass
class Tile:
    """One department in one tier: its systems, reachability and worst open severity."""

    tier: str
    department: str
    systems: int = 0
    up: int = 0
    down: int = 0
    unknown: int = 0
    open_by_severity: Counter[str] = field(default_factory=Counter)
    certs_expiring: int = 0

    @property
    def name(self) -> str:
        return self.department

    @property
    def worst(self) -> str:
        return next((s for s in SEVERITY_ORDER if self.open_by_severity[s]), "none")

    @property
    def open_total(self) -> int:
        return sum(self.open_by_severity.values())


@dataclass
class GroupRow:
    name: str
    systems: int = 0
    up: int = 0
    down: int = 0
    unknown: int = 0
    open_by_severity: Counter[str] = field(default_factory=Counter)
    certs_expiring: int = 0

    def add(self, tile: Tile) -> None:
        self.systems += tile.systems
        self.up, self.down, self.unknown = self.up + tile.up, self.down + tile.down, self.unknown + tile.unknown
        self.open_by_severity.update(tile.open_by_severity)
        self.certs_expiring += tile.certs_expiring

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "systems": self.systems,
            "up": self.up,
            "down": self.down,
            "unknown": self.unknown,
            "open_by_severity": dict(self.open_by_severity),
            "certs_expiring": self.certs_expiring,
        }


def system_states(store: SqliteStore) -> dict[str, str]:
    """up | down per system with a reachability reading (a system with any failing endpoint is down)."""
    return {sid: "down" if failed else "up" for sid, (_, failed) in store.reachability().items()}


def overview(
    store: SqliteStore, registry: Registry, user: User, policy: FindingsSettings, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    systems, ids = _scope(registry, user)
    by_id = {s.id: s for s in systems}
    states = system_states(store)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for sid, severity, n in store.finding_counts(
        FindingQuery(statuses=ACTIVE_STATUSES, system_ids=ids), "system_id", "severity"
    ):
        if sid in by_id:
            counts[sid][severity] += n
    certs = [c for c in store.certificates_expiring(30) if c["system_id"] in by_id]
    certs_by_system = Counter(c["system_id"] for c in certs)

    tiles: dict[tuple[str, str], Tile] = {}
    for s in systems:
        tile = tiles.setdefault((s.tier.value, s.owner.department), Tile(s.tier.value, s.owner.department))
        tile.systems += 1
        state = states.get(s.id, "unknown")
        setattr(tile, state, getattr(tile, state) + 1)
        tile.open_by_severity.update(counts.get(s.id, Counter()))
        tile.certs_expiring += certs_by_system[s.id]
    tiers = {t: GroupRow(t) for t in TIERS}
    depts: dict[str, GroupRow] = {}
    totals = GroupRow("all")
    for tile in tiles.values():
        tiers.setdefault(tile.tier, GroupRow(tile.tier)).add(tile)
        depts.setdefault(tile.department, GroupRow(tile.department)).add(tile)
        totals.add(tile)
    tile_groups = {
        t: sorted(
            (x for x in tiles.values() if x.tier == t), key=lambda x: (-_rank(x.worst), -x.open_total, x.department)
        )
        for t in tiers
    }

    availability: dict[str, dict[str, float | None]] = {t: {} for t in tiers}
    for window, span in (("24h", timedelta(hours=24)), ("7d", timedelta(days=7))):
        ok_total: dict[str, list[int]] = {t: [0, 0] for t in tiers}
        for sid, (ok, total) in store.availability(now - span).items():
            known = by_id.get(sid)
            if known is not None:
                pair = ok_total[known.tier.value]
                pair[0], pair[1] = pair[0] + ok, pair[1] + total
        for t, (ok, total) in ok_total.items():
            availability[t][window] = ok / total if total else None

    since = now - timedelta(hours=24)
    new_rows = store.finding_counts(
        FindingQuery(system_ids=ids, first_seen_after=since), "system_id", "rule_id", "category"
    )
    changes: dict[str, int] = {key: 0 for key, _, _ in CHANGE_GROUPS}
    for sid, rule_id, category, n in new_rows:
        if sid not in by_id:
            continue
        for key, rule_ids, categories in CHANGE_GROUPS:
            if (rule_ids and rule_id in rule_ids) or (categories and category in categories):
                changes[key] += n
    changes["new_total"] = sum(n for sid, _, _, n in new_rows if sid in by_id)
    changes["certs_14d"] = sum(1 for c in certs if c["days"] < 14)
    changes["reopened"] = sum(1 for r in store.reopened_since(since) if r[1] in by_id)

    risks = sorted(
        (
            (sum(RISK_WEIGHT.get(sev, 0) * n for sev, n in c.items()) * by_id[sid].mlps_level, sid)
            for sid, c in counts.items()
        ),
        reverse=True,
    )[:10]
    top_systems = [
        {"system": by_id[sid], "score": score, "open": counts[sid], "state": states.get(sid, "unknown")}
        for score, sid in risks
        if score > 0
    ]
    critical = store.query_findings(
        FindingQuery(statuses=ACTIVE_STATUSES, severities=[Severity.CRITICAL], system_ids=ids), limit=10, order="newest"
    )
    stale = store.count_findings(FindingQuery(statuses=ACTIVE_STATUSES, system_ids=ids, stale=True))
    overdue = store.count_findings(FindingQuery(system_ids=ids, overdue_cutoffs=overdue_cutoffs(policy, now)))
    trend_raw = store.active_trend(now - timedelta(days=13), ids)
    days = [(now - timedelta(days=13 - i)).date().isoformat() for i in range(14)]
    trend = [
        {"day": d, **{s: trend_raw[d].get(s, 0) for s in SEVERITY_ORDER}} if d in trend_raw else {"day": d}
        for d in days
    ]
    return {
        "now": now,
        "totals": totals,
        "tiers": [tiers[t] for t in tiers],
        "depts": sorted(depts.values(), key=lambda r: r.name),
        "tiles": tile_groups,
        "availability": availability,
        "changes": changes,
        "top_systems": top_systems,
        "critical": critical,
        "stale": stale,
        "overdue": overdue,
        "trend": trend,
        "freshness": store.probe_freshness(),
        "sweeps": store.running_sweeps(now),
        "certs": certs[:10],
    }


def _rank(severity: str) -> int:
    return Severity(severity).rank if severity in SEVERITY_ORDER else -1


def overdue_cutoffs(policy: FindingsSettings, now: datetime) -> dict[Severity, datetime]:
    """Per severity with an SLA: findings first seen before this moment are past their due date."""
    out = {}
    for sev in Severity:
        days = policy.days_for(sev)
        if days is not None:
            out[sev] = now - timedelta(days=days)
    return out


@dataclass
class Filters:
    """The alerts page's filters, parsed from the query string (bad values are ignored, never a traceback)."""

    severity: str | None = None
    status: str = "active"
    tier: str | None = None
    department: str | None = None
    system: str | None = None
    rule: str | None = None
    category: str | None = None
    age: str | None = None
    text: str | None = None
    overdue: bool = False
    stale: bool = False
    sort: str = "severity"
    page: int = 1
    per_page: int = 50

    @classmethod
    def parse(cls, q: Any, max_per_page: int = 200, default_per_page: int = 50) -> Filters:
        def num(name: str, default: int, hi: int) -> int:
            try:
                return min(max(int(q.get(name) or default), 1), hi)
            except ValueError:
                return default

        status = q.get("status") or "active"
        severity = q.get("severity") or None
        return cls(
            severity=severity if severity in SEVERITY_ORDER else None,
            status=status if status in {"active", "all", *(s.value for s in FindingStatus)} else "active",
            tier=q.get("tier") or None,
            department=q.get("department") or None,
            system=q.get("system") or None,
            rule=q.get("rule") or None,
            category=q.get("category") or None,
            age=q.get("age") if q.get("age") in (*AGES, "older30d") else None,
            text=(q.get("q") or "").strip()[:100] or None,
            overdue=q.get("overdue") in ("1", "true", "on"),
            stale=q.get("stale") in ("1", "true", "on"),
            sort=q.get("sort") if q.get("sort") in ("severity", "newest", "oldest", "last_seen") else "severity",
            page=num("page", 1, 100_000),
            per_page=num("per_page", default_per_page, max_per_page),
        )

    def statuses(self) -> list[FindingStatus] | None:
        if self.status == "all":
            return None
        if self.status == "active":
            return list(ACTIVE_STATUSES)
        return [FindingStatus(self.status)]

    def query(
        self, registry: Registry, user: User, policy: FindingsSettings, now: datetime | None = None
    ) -> FindingQuery | None:
        """The SQL filter; None when nothing can match (a department or system the user may not see)."""
        now = now or datetime.now(UTC)
        systems, ids = _scope(registry, user)
        if self.tier or self.department or self.system:
            ids = [
                s.id
                for s in systems
                if (self.tier is None or s.tier.value == self.tier)
                and (self.department is None or s.owner.department == self.department)
                and (self.system is None or s.id == self.system)
            ]
            if not ids:
                return None
        after = before = None
        if self.age in AGES:
            after = now - AGES[self.age]
        elif self.age == "older30d":
            before = now - AGES["30d"]
        return FindingQuery(
            statuses=self.statuses(),
            min_severity=Severity(self.severity) if self.severity else None,
            system_ids=ids,
            rule_ids=[self.rule] if self.rule else None,
            categories=[self.category] if self.category else None,
            text=self.text,
            first_seen_after=after,
            first_seen_before=before,
            overdue_cutoffs=overdue_cutoffs(policy, now) if self.overdue else None,
            stale=True if self.stale else None,
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, False)}


def findings_page(
    store: SqliteStore, registry: Registry, user: User, filters: Filters, policy: FindingsSettings
) -> tuple[list[Finding], int]:
    """One page of findings and how many match in all."""
    query = filters.query(registry, user, policy)
    if query is None:
        return [], 0
    total = store.count_findings(query)
    found = store.query_findings(
        query, limit=filters.per_page, offset=(filters.page - 1) * filters.per_page, order=filters.sort
    )
    return found, total


def departments(systems: list[System]) -> list[str]:
    return sorted({s.owner.department for s in systems})


def by_department(systems: list[System]) -> dict[str, list[System]]:
    out: dict[str, list[System]] = defaultdict(list)
    for s in systems:
        out[s.owner.department].append(s)
    return out
