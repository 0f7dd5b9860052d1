"""Assemble ReportData from the registry, the store's findings and the compliance engine's verdicts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sentinel.models import Finding, FindingStatus, Severity
from sentinel.registry.models import Registry, System
from sentinel.reports.model import (
    VERDICTS,
    ControlRecord,
    ExceptionRow,
    ProblemRow,
    RatioRow,
    ReportData,
    VerdictLike,
)
from sentinel.store import SqliteStore

RISK = {
    Severity.CRITICAL: "high",
    Severity.HIGH: "high",
    Severity.MEDIUM: "medium",
    Severity.LOW: "low",
    Severity.INFO: "low",
}
RISK_ORDER = {"high": 0, "medium": 1, "low": 2}
#: MLPS layer (安全类) by the clause's second-level number X.1.n
LAYERS = {"2": "安全通信网络", "3": "安全区域边界", "4": "安全计算环境", "5": "安全管理中心", "10": "安全运维管理"}


@dataclass(frozen=True)
class Scope:
    departments: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()
    levels: tuple[int, ...] = ()
    systems: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    def selects(self, s: System) -> bool:
        return (
            (not self.departments or s.owner.department in self.departments)
            and (not self.tiers or s.tier.value in self.tiers)
            and (not self.levels or s.mlps_level in self.levels)
            and (not self.systems or s.id in self.systems)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "departments": list(self.departments),
            "tiers": list(self.tiers),
            "mlps_levels": list(self.levels),
            "systems": list(self.systems),
        }


def layer_of(control: str) -> str:
    parts = control.split(" ", maxsplit=1)[0].split(".")
    return LAYERS.get(parts[2], "") if len(parts) > 2 and parts[1] == "1" else ""


def _evidence(v: VerdictLike) -> list[dict[str, Any]]:
    raw = getattr(v, "evidence", None)
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    return [i if isinstance(i, dict) else {"note": str(i)} for i in items]


def _in_period(f: Finding, scope: Scope) -> bool:
    if scope.since is not None and f.last_seen < scope.since:
        return False
    return not (scope.until is not None and f.first_seen > scope.until)


def build_report(
    registry: Registry,
    store: SqliteStore,
    verdicts: Iterable[VerdictLike],
    scope: Scope,
    now: datetime,
    lang: str,
    requirement_info: Callable[[str, str], tuple[str, str]] = lambda framework, control: ("", ""),
) -> ReportData:
    systems = [s for s in registry.systems if scope.selects(s)]
    by_id = {s.id: s for s in systems}
    ids = list(by_id)
    findings = [f for f in store.list_findings(system_ids=ids) if _in_period(f, scope)] if ids else []
    active = [f for f in findings if f.status in (FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED)]

    # Findings that evidence a control, per system: their worst severity is the record's risk.
    worst: dict[tuple[str, str], Severity] = {}
    titles_by_control: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in active:
        for ref in f.controls:
            key = (f.system_id, ref.partition(":")[2])
            if key not in worst or f.severity.rank > worst[key].rank:
                worst[key] = f.severity
            titles_by_control[key].append(f"{f.title} ({f.target})")

    records: list[ControlRecord] = []
    for v in verdicts:
        system = by_id.get(v.system_id)
        if system is None:
            continue
        title, text = requirement_info(v.framework, v.control)
        observed = titles_by_control.get((v.system_id, v.control), [])
        severity = worst.get((v.system_id, v.control))
        records.append(
            ControlRecord(
                system_id=system.id,
                system_name=system.name,
                department=system.owner.department,
                tier=system.tier.value,
                mlps_level=system.mlps_level,
                framework=v.framework,
                control=v.control,
                title=title,
                clause_text=text,
                layer=layer_of(v.control),
                targets=[e.url or f"{e.host}:{','.join(map(str, e.ports))}" for e in system.endpoints],
                observed="; ".join(observed) if observed else "",
                observed_at=v.observed_at.isoformat() if v.observed_at else None,
                method="remote test (测试)",
                evidence=_evidence(v),
                verdict=v.verdict,
                risk=RISK[severity]
                if severity is not None and v.verdict in ("non_compliant", "partially_compliant")
                else None,
            )
        )
    records.sort(key=lambda r: (r.department, r.system_id, r.framework, r.control))

    active.sort(key=lambda f: (RISK_ORDER[RISK[f.severity]], -f.severity.rank, f.system_id, f.title))
    problems = [
        ProblemRow(
            number=f"T{i:03d}",
            title=f.title,
            risk=RISK[f.severity],
            severity=f.severity.value,
            system_id=f.system_id,
            system_name=by_id[f.system_id].name,
            department=by_id[f.system_id].owner.department,
            target=f.target,
            description=f.title,
            remediation=" ".join(f.remediation.split()),
            controls=list(f.controls),
            first_seen=f.first_seen.isoformat(),
            finding_id=f.id,
        )
        for i, f in enumerate(active, start=1)
    ]
    exceptions = [
        ExceptionRow(
            f.id,
            f.system_id,
            f.title,
            f.status_by or "",
            f.status_reason or "",
            f.suppressed_until.isoformat() if f.suppressed_until else None,
        )
        for f in findings
        if f.status == FindingStatus.SUPPRESSED
    ]

    def ratios(key: Callable[[System], str]) -> list[RatioRow]:
        groups: dict[str, list[ControlRecord]] = defaultdict(list)
        members: dict[str, set[str]] = defaultdict(set)
        for s in systems:
            members[key(s)].add(s.id)
        for r in records:
            groups[key(by_id[r.system_id])].append(r)
        return [
            RatioRow(
                name,
                len(members[name]),
                len(groups[name]),
                {v: sum(1 for r in groups[name] if r.verdict == v) for v in VERDICTS},
            )
            for name in sorted(members)
        ]

    return ReportData(
        title="网络安全等级保护远程监测报告" if lang == "zh" else "MLPS 2.0 remote monitoring report",
        generated_at=now.isoformat(timespec="seconds"),
        scope=scope.describe(),
        period={
            "since": scope.since.isoformat() if scope.since else None,
            "until": (scope.until or now).isoformat(timespec="seconds"),
        },
        lang=lang,
        systems=[
            {
                "id": s.id,
                "name": s.name,
                "department": s.owner.department,
                "tier": s.tier.value,
                "mlps_level": s.mlps_level,
                "cii": s.cii,
            }
            for s in systems
        ],
        records=records,
        problems=problems,
        exceptions=exceptions,
        by_department=ratios(lambda s: s.owner.department),
        by_tier=ratios(lambda s: s.tier.value),
        by_level=ratios(lambda s: f"L{s.mlps_level}"),
    )
