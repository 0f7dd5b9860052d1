"""A finding: a rule's verdict about one target of one system, with a lifecycle."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sentinel.models.observer import DEFAULT_SITE, DEFAULT_VANTAGE, Vantage


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_RANK = {s: i for i, s in enumerate(Severity)}


class FindingStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    SUPPRESSED = "suppressed"
    #: the owner says it is fixed; it stays active until a sweep or a re-check shows it gone (or still there)
    RECTIFIED = "rectified"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


#: statuses of a finding that still needs work (open, taken on, or fixed but not yet verified)
ACTIVE_STATUSES = (FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED, FindingStatus.RECTIFIED)


def fingerprint(rule_id: str, system_id: str, target: str, vantage: Vantage = DEFAULT_VANTAGE) -> str:
    """Stable identity of a finding; sha256 so it is the same in every process and release. The vantage is part of
    it: the same problem seen from the Internet and from inside is two findings (each resolves on its own evidence),
    while shards of one vantage agree on every id. (The default is a single-site instance's vantage.)"""
    return hashlib.sha256(f"{rule_id}\x1f{system_id}\x1f{target}\x1f{vantage.value}".encode()).hexdigest()


def legacy_fingerprint(rule_id: str, system_id: str, target: str) -> str:
    """The id findings had before sites and vantages (what an upgraded store's rows are re-keyed from)."""
    return hashlib.sha256(f"{rule_id}\x1f{system_id}\x1f{target}".encode()).hexdigest()


@dataclass(slots=True)
class Finding:
    id: str
    rule_id: str
    title: str
    severity: Severity
    category: str
    system_id: str
    target: str
    status: FindingStatus
    first_seen: datetime
    last_seen: datetime
    occurrences: int
    evidence: dict[str, Any] = field(default_factory=dict)
    controls: list[str] = field(default_factory=list)
    remediation: str = ""
    status_reason: str | None = None
    status_by: str | None = None
    suppressed_until: datetime | None = None
    resolved_at: datetime | None = None
    regression: bool = False
    #: Since when the sweeps observed the target but could not confirm the problem (precondition not met,
    #: probe error): the finding stays as it is, last confirmed at `last_seen`. None: confirmed by the last look.
    stale_since: datetime | None = None
    #: the owner's planned rectification date (通报 → 整改), if they gave one
    planned_fix: datetime | None = None
    #: who observed it: the instance's site and vantage (`vantage` None: recorded before sites, not yet adopted by
    #: the instance that owns the store; its id is then still the one of `legacy_fingerprint`)
    site: str = DEFAULT_SITE
    vantage: Vantage | None = DEFAULT_VANTAGE

    @property
    def is_stale(self) -> bool:
        return self.stale_since is not None and self.status.is_active

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "site": self.site,
            "vantage": self.vantage.value if self.vantage is not None else None,
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity.value,
            "category": self.category,
            "system_id": self.system_id,
            "target": self.target,
            "status": self.status.value,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "occurrences": self.occurrences,
            "evidence": self.evidence,
            "controls": list(self.controls),
            "remediation": self.remediation,
            "status_reason": self.status_reason,
            "status_by": self.status_by,
            "suppressed_until": self.suppressed_until.isoformat() if self.suppressed_until else None,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "regression": self.regression,
            "stale_since": self.stale_since.isoformat() if self.stale_since else None,
            "last_confirmed": self.last_seen.isoformat(),
            "planned_fix": self.planned_fix.isoformat() if self.planned_fix else None,
        }
