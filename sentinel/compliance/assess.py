"""Per system × requirement verdicts from the store's findings and latest observations.

Verdict policy (reference §3.4): a remote monitor never claims 符合.

- `not_applicable`  the framework or the requirement does not apply to the system (level, CII, tags), or
                    none of the requirement's rules applies to it;
- `non_compliant`   an active (or accepted-risk) finding of a mapped rule, and the requirement's coverage
                    is F: the network observation itself establishes the non-conformity;
- `partially_compliant`  such a finding where coverage is P or I (the finding is evidence against one
                    part of the requirement; the rest needs an on-site check);
- `no_remote_finding`  the mapped rules had observations to read and found nothing: 需现场核查;
- `not_assessed`    no rule evidences the requirement, or nothing was observed for it. Never a pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sentinel.compliance.frameworks import Framework, Mapping, Requirement
from sentinel.compliance.order import natural_key
from sentinel.engine.rule import Rule
from sentinel.errors import InputError, Problem
from sentinel.models import Finding, FindingStatus
from sentinel.registry.models import Registry, System

if TYPE_CHECKING:  # the store imports sinks, which import the tracker: keep this edge type-only
    from sentinel.store import SqliteStore


class ComplianceVerdict(StrEnum):
    NON_COMPLIANT = "non_compliant"  # 不符合
    PARTIALLY_COMPLIANT = "partially_compliant"  # 部分符合
    NOT_APPLICABLE = "not_applicable"  # 不适用
    NO_REMOTE_FINDING = "no_remote_finding"  # 远程未发现问题 (需现场核查)
    NOT_ASSESSED = "not_assessed"  # 未评估

    @property
    def label_zh(self) -> str:
        return _ZH[self]


_ZH = {
    ComplianceVerdict.NON_COMPLIANT: "不符合",
    ComplianceVerdict.PARTIALLY_COMPLIANT: "部分符合",
    ComplianceVerdict.NOT_APPLICABLE: "不适用",
    ComplianceVerdict.NO_REMOTE_FINDING: "远程未发现问题(需现场核查)",
    ComplianceVerdict.NOT_ASSESSED: "未评估",
}

#: Findings that count as evidence against a requirement: active ones and accepted risks (an accepted
#: risk is still a non-conformity; it is shown as such, with the exception that accepted it).
DEFAULT_MAX_AGE = timedelta(days=7)
COUNTED = (FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED, FindingStatus.SUPPRESSED)


@dataclass(frozen=True)
class ControlVerdict:
    system_id: str
    framework: str
    control: str
    title: str
    verdict: ComplianceVerdict
    evidence: list[str]
    observed_at: datetime | None
    coverage: str = ""
    rules: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "system_id": self.system_id,
            "framework": self.framework,
            "control": self.control,
            "title": self.title,
            "verdict": self.verdict.value,
            "verdict_zh": self.verdict.label_zh,
            "evidence": list(self.evidence),
            "observed_at": self.observed_at.isoformat() if self.observed_at else None,
            "coverage": self.coverage,
            "rules": list(self.rules),
            "findings": list(self.findings),
        }


@dataclass
class _SystemFacts:
    findings_by_rule: dict[str, list[Finding]] = field(default_factory=lambda: defaultdict(list))
    ok_kinds: dict[str, datetime] = field(default_factory=dict)  # kind → latest ok observation
    error_kinds: set[str] = field(default_factory=set)


def _facts(store: SqliteStore, system_ids: set[str], not_before: datetime) -> dict[str, _SystemFacts]:
    facts: dict[str, _SystemFacts] = {sid: _SystemFacts() for sid in system_ids}
    for f in store.list_findings(statuses=COUNTED, system_ids=sorted(system_ids)):
        facts[f.system_id].findings_by_rule[f.rule_id].append(f)
    for row in store.latest_observations():
        sf = facts.get(row["system_id"])
        if sf is None:
            continue
        at = datetime.fromisoformat(row["observed_at"])
        if at < not_before:
            continue  # too old to stand for the current state
        if row["status"] == "ok":
            kind = row["kind"]
            if kind not in sf.ok_kinds or sf.ok_kinds[kind] < at:
                sf.ok_kinds[kind] = at
        else:
            sf.error_kinds.add(row["kind"])
    return facts


def _describe(f: Finding) -> str:
    state = f.status.value
    if f.status == FindingStatus.SUPPRESSED:
        state = f"accepted risk: {f.status_reason or 'suppressed'}"
    return f"{f.rule_id} on {f.target}: {f.title} ({f.severity.value}, {state}, first seen {f.first_seen.isoformat()})"


def assess_one(
    system: System, fw: Framework, req: Requirement, rules: Sequence[Rule], facts: _SystemFacts
) -> ControlVerdict:
    def verdict(v: ComplianceVerdict, evidence: list[str], at: datetime | None = None, **kw: Any) -> ControlVerdict:
        return ControlVerdict(
            system.id, fw.framework, req.id, req.title, v, evidence, at, req.coverage, [r.id for r in rules], **kw
        )

    if not fw.applies_to.matches(system) or not req.applies_to.matches(system):
        return verdict(ComplianceVerdict.NOT_APPLICABLE, ["requirement does not apply to this system's level/tags"])
    if not rules:
        return verdict(ComplianceVerdict.NOT_ASSESSED, ["no loaded rule evidences this requirement"])
    applicable = [r for r in rules if r.applies_to.matches(system)]
    if not applicable:
        return verdict(ComplianceVerdict.NOT_APPLICABLE, ["none of the mapped rules applies to this system"])
    found = [f for r in applicable for f in facts.findings_by_rule.get(r.id, [])]
    if found:
        found.sort(key=lambda f: (-f.severity.rank, f.rule_id, f.target))
        v = ComplianceVerdict.NON_COMPLIANT if req.coverage == "F" else ComplianceVerdict.PARTIALLY_COMPLIANT
        return verdict(
            v, [_describe(f) for f in found], max(f.last_seen for f in found), findings=[f.id for f in found]
        )
    kinds = sorted({k for r in applicable for k in r.observation})
    seen = {k: facts.ok_kinds[k] for k in kinds if k in facts.ok_kinds}
    if not seen:
        failed = sorted(set(kinds) & facts.error_kinds)
        why = f"observations of {', '.join(failed)} failed" if failed else f"no observation of {', '.join(kinds)}"
        return verdict(ComplianceVerdict.NOT_ASSESSED, [f"{why}; cannot judge remotely"])
    missing = [k for k in kinds if k not in seen]
    evidence = [
        f"no finding from {', '.join(r.id for r in applicable)} over observations of {', '.join(sorted(seen))}",
        "remote evidence only: confirm on site (需现场核查)",
    ]
    if missing:
        evidence.append(f"not observed: {', '.join(missing)}")
    return verdict(ComplianceVerdict.NO_REMOTE_FINDING, evidence, max(seen.values()))


#: Namespaces a system is judged against by default: the Chinese national frameworks (MLPS at the system's own
#: level, and the government-website indicators where they apply). CIS and NIST are opt-in.
NATIONAL_NAMESPACES = ("mlps", "gov_web")


def select_frameworks(
    frameworks: Iterable[Framework], ids: Iterable[str] = (), international: bool = False
) -> list[Framework]:
    """The frameworks to judge against: exactly `ids` when given, else the national ones (plus CIS/NIST when
    `international`). Unknown ids are an InputError naming them and the known ones."""
    fws = list(frameworks)
    wanted = list(dict.fromkeys(ids))
    if wanted:
        known = {f.framework for f in fws}
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise InputError(
                [
                    Problem(
                        "--framework",
                        None,
                        f"unknown framework(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                    )
                ]
            )
        return [f for f in fws if f.framework in wanted]
    return [f for f in fws if international or f.namespace in NATIONAL_NAMESPACES]


def iter_assess(
    store: SqliteStore,
    registry: Registry,
    frameworks: Iterable[Framework],
    now: datetime,
    rules: Iterable[Rule] | None = None,
    system_ids: Iterable[str] | None = None,
    max_age: timedelta = DEFAULT_MAX_AGE,
    applicable_only: bool = True,
    on_system: Callable[[System], None] | None = None,
) -> Iterator[ControlVerdict]:
    """Verdicts one system at a time (callers stream them instead of holding an estate's worth).

    With `applicable_only`, a system is judged only against the frameworks that apply to it, so a level-2
    system gets mlps2-l2 rows and no mlps2-l3 `not_applicable` rows; requirements of an applicable framework
    that do not apply (a mail-only clause) still give a `not_applicable` row. Requirements come in natural
    order (3.3 before 13.10). `on_system` is called after each system (progress)."""
    if rules is None:
        from sentinel.engine.loader import load_rules
        from sentinel.paths import shipped_rules_dir

        rules = load_rules([shipped_rules_dir()])
    fws = list(frameworks)
    mapping = Mapping.build(fws, rules)
    ordered = {fw.framework: sorted(fw.requirements, key=lambda r: natural_key(r.id)) for fw in fws}
    wanted = set(system_ids) if system_ids is not None else None
    systems = [s for s in registry.systems if wanted is None or s.id in wanted]
    facts = _facts(store, {s.id for s in systems}, now - max_age)
    for system in systems:
        for fw in fws:
            if applicable_only and not fw.applies_to.matches(system):
                continue
            for req in ordered[fw.framework]:
                yield assess_one(system, fw, req, mapping.rules_for(fw.framework, req.id), facts[system.id])
        if on_system is not None:
            on_system(system)


def assess(
    store: SqliteStore,
    registry: Registry,
    frameworks: Iterable[Framework],
    now: datetime,
    rules: Iterable[Rule] | None = None,
    system_ids: Iterable[str] | None = None,
    max_age: timedelta = DEFAULT_MAX_AGE,
) -> list[ControlVerdict]:
    """Verdicts for every (system, framework requirement) at `now`, including `not_applicable` rows for
    frameworks that do not apply to a system. `rules` defaults to the shipped rules.

    Observations older than `max_age` before `now` are not evidence any more (the requirement becomes
    `not_assessed`); findings count while they are active, whatever their age."""
    return list(iter_assess(store, registry, frameworks, now, rules, system_ids, max_age, applicable_only=False))
