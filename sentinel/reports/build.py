"""Assemble ReportData from the registry, the store's findings and the compliance engine's verdicts.

Estate scale: verdicts are consumed as a stream; problems are grouped per rule (one remediation, the affected
systems under it); per-requirement records stay in the data (XLSX/CSV/JSON/OSCAL list them all) while the
HTML/PDF lists them only for small scopes (`detail_limit`)."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sentinel.compliance.order import natural_key
from sentinel.models import Finding, FindingStatus, Severity
from sentinel.registry.models import Registry, System
from sentinel.reports.labels import LABELS
from sentinel.reports.model import (
    VERDICTS,
    Affected,
    ControlRecord,
    Cover,
    DepartmentSection,
    ExceptionRow,
    ProblemRow,
    RatioRow,
    ReportData,
    SystemRow,
    VerdictLike,
)
from sentinel.reports.text import finding_text, framework_title, local_time, plain, rule_text
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
LAYERS_EN = {
    "2": "Communication network",
    "3": "Area boundary",
    "4": "Computing environment",
    "5": "Management centre",
    "10": "Operations management",
}
#: Reports over more systems than this summarise per department instead of listing every record in HTML/PDF.
DEFAULT_DETAIL_LIMIT = 60
#: The evidence window when no --since is given: older observations do not count (compliance.DEFAULT_MAX_AGE).
DEFAULT_WINDOW = timedelta(days=7)


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


@dataclass(frozen=True)
class CoverInput:
    organisation: str = ""
    assessor: str = ""
    report_number: str = ""


def layer_of(control: str, lang: str = "zh") -> str:
    parts = control.split(" ", maxsplit=1)[0].split(".")
    table = LAYERS if lang == "zh" else LAYERS_EN
    return table.get(parts[2], "") if len(parts) > 2 and parts[1] == "1" else ""


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


def _quiet_observed(v: VerdictLike, t: dict[str, str]) -> str:
    """What a record without findings says, in the report's language (the engine's evidence is English)."""
    verdict = str(v.verdict)
    if verdict == "no_remote_finding":
        return t["obs_no_finding"]
    if verdict == "not_applicable":
        return t["obs_na"]
    first = str((getattr(v, "evidence", None) or [""])[0])
    if first.startswith("no loaded rule"):
        return t["obs_no_rule"]
    return t["obs_failed"] if " failed" in first else t["obs_none"]


def report_number(scope: Scope, now: datetime) -> str:
    """SEN-YYYYMMDD-xxxxxx: the date (Beijing) and a digest of the scope, so reruns of one scope share a stem."""
    digest = hashlib.sha256(repr(sorted(scope.describe().items())).encode()).hexdigest()[:6].upper()
    return f"SEN-{local_time(now)[:10].replace('-', '')}-{digest}"


def build_report(
    registry: Registry,
    store: SqliteStore,
    verdicts: Iterable[VerdictLike],
    scope: Scope,
    now: datetime,
    lang: str,
    requirement_info: Callable[[str, str], tuple[str, str]] = lambda framework, control: ("", ""),
    rules: Mapping[str, Any] | None = None,
    cover: CoverInput | None = None,
    frameworks: Iterable[tuple[str, str]] = (),
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
    on_record: Callable[[], None] | None = None,
    namespaces: Iterable[str] | None = None,
) -> ReportData:
    """`rules` (rule id → Rule) supplies the rule's text in `lang` (see text.rule_text); `on_record` is called
    per verdict consumed (progress); `namespaces` limits the control references shown with a problem to the
    frameworks reported on (a national report does not list NIST ids)."""
    t = LABELS[lang]
    rule_by_id = rules or {}
    systems = [s for s in registry.systems if scope.selects(s)]
    by_id = {s.id: s for s in systems}
    ids = list(by_id)
    findings = [f for f in store.list_findings(system_ids=ids) if _in_period(f, scope)] if ids else []
    active = [f for f in findings if f.status in (FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED)]
    untranslated: set[str] = set()

    def title_of(f: Finding) -> str:
        text = finding_text(f, "title", lang, rule_by_id)  # flapping companions too
        if lang != "en" and text == f.title:
            untranslated.add(f.rule_id)
        return text

    # Findings that evidence a control, per system: their worst severity is the record's risk.
    worst: dict[tuple[str, str], Severity] = {}
    titles_by_control: dict[tuple[str, str], list[str]] = defaultdict(list)
    for f in active:
        title = title_of(f)
        for ref in f.controls:
            key = (f.system_id, ref.partition(":")[2])
            if key not in worst or f.severity.rank > worst[key].rank:
                worst[key] = f.severity
            titles_by_control[key].append(f"{title} ({f.target})")

    targets = {s.id: [e.url or f"{e.host}:{','.join(map(str, e.ports))}" for e in s.endpoints] for s in systems}
    records: list[ControlRecord] = []
    for v in verdicts:
        if on_record is not None:
            on_record()
        system = by_id.get(v.system_id)
        if system is None:
            continue
        title, text = requirement_info(v.framework, v.control)
        observed = titles_by_control.get((v.system_id, v.control), [])
        severity = worst.get((v.system_id, v.control))
        failing = v.verdict in ("non_compliant", "partially_compliant")
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
                layer=layer_of(v.control, lang),
                targets=targets[system.id],
                observed="; ".join(observed) if observed and failing else _quiet_observed(v, t),
                observed_at=v.observed_at.isoformat() if v.observed_at else None,
                method=t["method_short"],
                evidence=_evidence(v),
                verdict=str(v.verdict),
                risk=RISK[severity] if severity is not None and failing else None,
            )
        )
    order = {s.id: i for i, s in enumerate(sorted(systems, key=lambda s: (s.owner.department, s.id)))}
    records.sort(key=lambda r: (order[r.system_id], r.framework, natural_key(r.control)))

    problems = _group_problems(active, by_id, rule_by_id, lang, title_of, set(namespaces) if namespaces else None)
    for p in problems:
        if not p.localised:
            untranslated.add(p.rule_id)
    exceptions = [
        ExceptionRow(
            f.id,
            f.system_id,
            title_of(f),
            f.status_by or "",
            f.status_reason or "",
            f.suppressed_until.isoformat() if f.suppressed_until else None,
        )
        for f in findings
        if f.status == FindingStatus.SUPPRESSED
    ]

    counts_by_system: dict[str, Counter[str]] = defaultdict(Counter)
    frameworks_by_system: dict[str, set[str]] = defaultdict(set)
    for r in records:
        counts_by_system[r.system_id][r.verdict] += 1
        frameworks_by_system[r.system_id].add(r.framework)

    def ratios(key: Callable[[ControlRecord], str], members: dict[str, set[str]]) -> list[RatioRow]:
        groups: dict[str, Counter[str]] = defaultdict(Counter)
        for r in records:
            groups[key(r)][r.verdict] += 1
        return [
            RatioRow(name, len(members[name]), sum(groups[name].values()), {v: groups[name][v] for v in VERDICTS})
            for name in sorted(members, key=natural_key)
        ]

    def members_of(key: Callable[[System], str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = defaultdict(set)
        for s in systems:
            out[key(s)].add(s.id)
        return out

    fw_members: dict[str, set[str]] = defaultdict(set)
    for r in records:
        fw_members[r.framework].add(r.system_id)

    problem_numbers: dict[str, list[str]] = defaultdict(list)
    for p in problems:
        for a in p.affected:
            problem_numbers[a.system_id].append(p.number)
    departments = _departments(systems, counts_by_system, frameworks_by_system, problem_numbers, problems)

    since = scope.since or (scope.until or now) - DEFAULT_WINDOW
    until = scope.until or now
    fw_list = list(frameworks)
    used = set(fw_members)
    return ReportData(
        title="网络安全等级保护远程监测报告" if lang == "zh" else "MLPS 2.0 remote monitoring report",
        generated_at=now.isoformat(timespec="seconds"),
        scope=scope.describe(),
        period={"since": since.isoformat(timespec="seconds"), "until": until.isoformat(timespec="seconds")},
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
        by_department=ratios(lambda r: r.department, members_of(lambda s: s.owner.department)),
        by_tier=ratios(lambda r: r.tier, members_of(lambda s: s.tier.value)),
        by_level=ratios(lambda r: f"L{r.mlps_level}", members_of(lambda s: f"L{s.mlps_level}")),
        by_framework=ratios(lambda r: r.framework, fw_members),
        departments=departments,
        cover=Cover(
            organisation=(cover.organisation if cover else "") or "—",
            assessor=(cover.assessor if cover else "") or "—",
            report_number=(cover.report_number if cover else "") or report_number(scope, now),
            period_start=local_time(since),
            period_end=local_time(until),
            generated=local_time(now),
            frameworks=[(i, framework_title(title, lang)) for i, title in fw_list if i in used or not used],
        ),
        detailed=len(systems) <= detail_limit,
        untranslated_rules=sorted(untranslated),
    )


def _group_problems(
    active: list[Finding],
    by_id: dict[str, System],
    rule_by_id: Mapping[str, Any],
    lang: str,
    title_of: Callable[[Finding], str],
    namespaces: set[str] | None,
) -> list[ProblemRow]:
    """One problem per rule: the same weakness on 400 systems is one remediation with 400 systems under it."""
    by_rule: dict[str, list[Finding]] = defaultdict(list)
    for f in active:
        by_rule[f.rule_id].append(f)
    groups: list[tuple[tuple[Any, ...], ProblemRow]] = []
    for rule_id, fs in by_rule.items():
        worst = max(fs, key=lambda f: f.severity.rank)
        rule = rule_by_id.get(rule_id)
        title = title_of(worst)
        remediation, rem_ok = rule_text(rule, "remediation", lang, worst.remediation)
        _, title_ok = rule_text(rule, "title", lang, worst.title)
        per_system: dict[str, list[Finding]] = defaultdict(list)
        for f in fs:
            per_system[f.system_id].append(f)
        affected = [
            Affected(
                system_id=sid,
                system_name=by_id[sid].name,
                department=by_id[sid].owner.department,
                targets=sorted({f.target for f in sf}),
                first_seen=min(f.first_seen for f in sf).isoformat(),
                finding_ids=sorted(f.id for f in sf),
            )
            for sid, sf in sorted(per_system.items(), key=lambda kv: (by_id[kv[0]].owner.department, kv[0]))
        ]
        refs = {c for f in fs for c in f.controls if namespaces is None or c.partition(":")[0] in namespaces}
        controls = sorted(refs, key=natural_key)
        row = ProblemRow(
            number="",
            rule_id=rule_id,
            title=title,
            risk=RISK[worst.severity],
            severity=worst.severity.value,
            description=title,
            remediation=plain(remediation),
            controls=controls,
            affected=affected,
            localised=rem_ok and title_ok,
        )
        groups.append(((RISK_ORDER[row.risk], -worst.severity.rank, -len(affected), rule_id), row))
    groups.sort(key=lambda g: g[0])
    return [replace(row, number=f"T{i:03d}") for i, (_, row) in enumerate(groups, start=1)]


def _departments(
    systems: list[System],
    counts: dict[str, Counter[str]],
    frameworks: dict[str, set[str]],
    problem_numbers: dict[str, list[str]],
    problems: list[ProblemRow],
) -> list[DepartmentSection]:
    by_dept: dict[str, list[System]] = defaultdict(list)
    for s in systems:
        by_dept[s.owner.department].append(s)
    out = []
    for n, (name, members) in enumerate(sorted(by_dept.items()), start=1):
        rows = [
            SystemRow(
                s.id,
                s.name,
                name,
                s.tier.value,
                s.mlps_level,
                sorted(frameworks.get(s.id, set())),
                {v: counts[s.id][v] for v in VERDICTS},
                problem_numbers.get(s.id, []),
            )
            for s in sorted(members, key=lambda s: s.id)
        ]
        total: Counter[str] = Counter()
        for r in rows:
            total.update(r.counts)
        here = [
            (p.number, p.title, p.risk, sum(1 for a in p.affected if a.department == name))
            for p in problems
            if any(a.department == name for a in p.affected)
        ]
        out.append(DepartmentSection(name, f"5.{n}", rows, {v: total[v] for v in VERDICTS}, here))
    return out
