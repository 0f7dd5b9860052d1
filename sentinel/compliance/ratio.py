"""Compliance ratios per system, department or tier: the share of applicable requirements with no remote
finding. `not_assessed` stays in the denominator, so "could not observe" never raises the ratio."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sentinel.compliance.assess import ComplianceVerdict, ControlVerdict
from sentinel.registry.models import Registry

GroupBy = Literal["system", "department", "tier"]


@dataclass(frozen=True)
class Ratio:
    group_by: str
    group: str
    framework: str
    counts: dict[str, int]

    @property
    def applicable(self) -> int:
        return sum(n for v, n in self.counts.items() if v != ComplianceVerdict.NOT_APPLICABLE)

    @property
    def ratio(self) -> float | None:
        """no_remote_finding / applicable requirements (None when nothing applies)."""
        if not self.applicable:
            return None
        return self.counts.get(ComplianceVerdict.NO_REMOTE_FINDING, 0) / self.applicable

    def to_dict(self) -> dict[str, Any]:
        return {
            "group_by": self.group_by,
            "group": self.group,
            "framework": self.framework,
            "counts": dict(self.counts),
            "applicable": self.applicable,
            "ratio": None if self.ratio is None else round(self.ratio, 4),
        }


def ratios(verdicts: Iterable[ControlVerdict], registry: Registry, group_by: GroupBy = "system") -> list[Ratio]:
    """One ratio per (group, framework)."""
    counters: dict[tuple[str, str], Counter[str]] = {}
    for v in verdicts:
        system = registry.system(v.system_id)
        if system is None:
            continue
        group = {"system": system.id, "department": system.owner.department, "tier": system.tier.value}[group_by]
        counters.setdefault((group, v.framework), Counter())[v.verdict.value] += 1
    return [Ratio(group_by, g, fw, dict(c)) for (g, fw), c in sorted(counters.items())]
