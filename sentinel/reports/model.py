"""The compliance report's content, independent of its format (HTML, PDF, XLSX, CSV, JSON, OSCAL)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

#: machine names of verdicts, most severe first (a remote monitor never claims 符合 by itself)
VERDICTS = ("non_compliant", "partially_compliant", "no_remote_finding", "not_assessed", "not_applicable")


class VerdictLike(Protocol):
    """What the compliance engine hands over for each system × requirement."""

    @property
    def system_id(self) -> str: ...

    @property
    def framework(self) -> str: ...

    @property
    def control(self) -> str: ...

    @property
    def verdict(self) -> str: ...

    @property
    def observed_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class ControlRecord:
    """One row of appendix D: a system, a requirement, what was observed, and the verdict."""

    system_id: str
    system_name: str
    department: str
    tier: str
    mlps_level: int
    framework: str
    control: str
    title: str
    clause_text: str
    layer: str
    targets: list[str]
    observed: str
    observed_at: str | None
    method: str
    evidence: list[dict[str, Any]]
    verdict: str
    risk: str | None


@dataclass(frozen=True)
class Affected:
    """One system affected by a problem: its targets and the findings behind it."""

    system_id: str
    system_name: str
    department: str
    targets: list[str]
    first_seen: str
    finding_ids: list[str]


@dataclass(frozen=True)
class ProblemRow:
    """A problem: one rule's active findings grouped (one remediation), numbered T001... by risk."""

    number: str  # T001...
    rule_id: str
    title: str
    risk: str  # high | medium | low
    severity: str
    description: str
    remediation: str
    controls: list[str]
    affected: list[Affected]
    localised: bool = True  # False: the rule has no text in the report's language; its English text is shown

    @property
    def systems(self) -> int:
        return len(self.affected)

    @property
    def findings(self) -> int:
        return sum(len(a.finding_ids) for a in self.affected)

    def by_department(self) -> list[tuple[str, list[Affected]]]:
        out: dict[str, list[Affected]] = {}
        for a in self.affected:
            out.setdefault(a.department, []).append(a)
        return sorted(out.items())


@dataclass(frozen=True)
class SystemRow:
    """A system's line in its department's section: verdict counts and the problems that touch it."""

    system_id: str
    system_name: str
    department: str
    tier: str
    mlps_level: int
    frameworks: list[str]
    counts: dict[str, int]
    problems: list[str]  # problem numbers


@dataclass(frozen=True)
class DepartmentSection:
    name: str
    number: str  # section number, e.g. "5.3"
    systems: list[SystemRow]
    counts: dict[str, int]
    problems: list[tuple[str, str, str, int]]  # (number, title, risk, affected systems in this department)

    @property
    def ratio(self) -> float | None:
        return RatioRow(self.name, len(self.systems), sum(self.counts.values()), self.counts).ratio


@dataclass(frozen=True)
class Cover:
    """What an auditor signs: who was assessed, by whom, the report number and the period (Beijing time)."""

    organisation: str
    assessor: str
    report_number: str
    period_start: str
    period_end: str
    generated: str
    frameworks: list[tuple[str, str]]  # (id, title)


@dataclass(frozen=True)
class ExceptionRow:
    finding_id: str
    system_id: str
    title: str
    owner: str
    justification: str
    expires: str | None


@dataclass(frozen=True)
class RatioRow:
    name: str
    systems: int
    assessed: int
    counts: dict[str, int]

    @property
    def ratio(self) -> float | None:
        """no_remote_finding / applicable requirements, the same definition as `sentinel compliance status`:
        not_assessed stays in the denominator, so "could not observe" never raises the ratio."""
        applicable = sum(n for v, n in self.counts.items() if v != "not_applicable")
        return self.counts.get("no_remote_finding", 0) / applicable if applicable else None


@dataclass
class ReportData:
    title: str
    generated_at: str
    scope: dict[str, Any]
    period: dict[str, str | None]
    lang: str
    systems: list[dict[str, Any]]
    records: list[ControlRecord]
    problems: list[ProblemRow]
    exceptions: list[ExceptionRow]
    by_department: list[RatioRow] = field(default_factory=list)
    by_tier: list[RatioRow] = field(default_factory=list)
    by_level: list[RatioRow] = field(default_factory=list)
    by_framework: list[RatioRow] = field(default_factory=list)
    departments: list[DepartmentSection] = field(default_factory=list)
    cover: Cover | None = None
    detailed: bool = True  # per-record appendix included (small scopes); estate reports summarise instead
    untranslated_rules: list[str] = field(default_factory=list)

    @property
    def verdict_counts(self) -> dict[str, int]:
        counts = Counter(r.verdict for r in self.records)
        return {v: counts.get(v, 0) for v in VERDICTS}

    @property
    def overall(self) -> RatioRow:
        return RatioRow("all", len(self.systems), len(self.records), self.verdict_counts)

    def to_dict(self) -> dict[str, Any]:
        def ratio(r: RatioRow) -> dict[str, Any]:
            return {
                "name": r.name,
                "systems": r.systems,
                "assessed": r.assessed,
                "counts": r.counts,
                "compliance_ratio": r.ratio,
            }

        return {
            "title": self.title,
            "generated_at": self.generated_at,
            "scope": self.scope,
            "period": self.period,
            "lang": self.lang,
            "summary": {
                "systems": len(self.systems),
                "verdicts": self.verdict_counts,
                "compliance_ratio": self.overall.ratio,
                "by_department": [ratio(r) for r in self.by_department],
                "by_tier": [ratio(r) for r in self.by_tier],
                "by_mlps_level": [ratio(r) for r in self.by_level],
                "by_framework": [ratio(r) for r in self.by_framework],
            },
            "cover": asdict(self.cover) if self.cover else None,
            "departments": [
                {
                    "name": d.name,
                    "counts": d.counts,
                    "compliance_ratio": d.ratio,
                    "systems": [asdict(s) for s in d.systems],
                }
                for d in self.departments
            ],
            "untranslated_rules": self.untranslated_rules,
            "systems": self.systems,
            "records": [asdict(r) for r in self.records],
            "problems": [{**asdict(p), "systems": p.systems, "findings": p.findings} for p in self.problems],
            "exceptions": [asdict(e) for e in self.exceptions],
        }
