"""How far each site has got with a warning: the city's table of district × affected × rectified × overdue."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sentinel.advisories.model import Advisory
from sentinel.models import Finding, FindingStatus

#: how far one affected system has got, least advanced first; a system with several findings (several
#: targets) is as far as its least advanced one
STAGES = ("open", "acknowledged", "rectified", "verified")
_STAGE_OF = {
    FindingStatus.OPEN: "open",
    FindingStatus.ACKNOWLEDGED: "acknowledged",
    FindingStatus.RECTIFIED: "rectified",  # the owner says fixed; not yet shown gone by a probe
    FindingStatus.RESOLVED: "verified",  # a sweep or re-check saw the condition gone
}


@dataclass(frozen=True, slots=True)
class SiteProgress:
    site: str
    #: systems with a finding for the warning (suppressed ones, accepted risks, are counted apart)
    affected: int
    acknowledged: int
    rectified: int
    verified: int
    #: affected systems not yet verified after the deadline
    overdue: int
    suppressed: int
    #: systems whose finding could not be confirmed by the latest look (probe failing, precondition unmet)
    stale: int

    @property
    def pending(self) -> int:
        return self.affected - self.verified

    def as_dict(self) -> dict[str, object]:
        return {
            "site": self.site,
            "affected": self.affected,
            "acknowledged": self.acknowledged,
            "rectified": self.rectified,
            "verified": self.verified,
            "overdue": self.overdue,
            "suppressed": self.suppressed,
            "stale": self.stale,
        }


def by_site(
    advisory: Advisory, findings: Iterable[Finding], now: datetime, sites: Iterable[str] = ()
) -> list[SiteProgress]:
    """One row per site (every site in `sites` gets a row, affected or not), from the warning's findings.
    Acknowledged, rectified and verified count systems at or past that stage, so each column reads as
    "how many have got this far"."""
    stage: dict[tuple[str, str], int] = {}
    suppressed: dict[str, set[str]] = {}
    stale: dict[str, set[str]] = {}
    for f in findings:
        if f.rule_id != advisory.rule_id:
            continue
        if f.status is FindingStatus.SUPPRESSED:
            suppressed.setdefault(f.site, set()).add(f.system_id)
            continue
        key = (f.site, f.system_id)
        rank = STAGES.index(_STAGE_OF[f.status])
        stage[key] = min(stage.get(key, rank), rank)
        if f.is_stale and f.status.is_active:
            stale.setdefault(f.site, set()).add(f.system_id)
    late = now > advisory.deadline
    rows: dict[str, list[int]] = {site: [0, 0, 0, 0, 0] for site in sites}
    for (site, _system), rank in stage.items():
        row = rows.setdefault(site, [0, 0, 0, 0, 0])
        row[0] += 1
        for i in range(1, 4):
            row[i] += rank >= i
        row[4] += late and rank < STAGES.index("verified")
    for site in suppressed:
        rows.setdefault(site, [0, 0, 0, 0, 0])
    return [
        SiteProgress(
            site,
            affected=row[0],
            acknowledged=row[1],
            rectified=row[2],
            verified=row[3],
            overdue=row[4],
            suppressed=len(suppressed.get(site, ())),
            stale=len(stale.get(site, ())),
        )
        for site, row in sorted(rows.items())
    ]
