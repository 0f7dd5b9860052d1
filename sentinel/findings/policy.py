"""Findings policy: due dates from severity (a configurable SLA) and where the exceptions file lives.

Settings key (`findings:` in sentinel.yaml):

    findings:
      exceptions: exceptions.yaml      # reviewed accepted risks (see sentinel.findings.exceptions)
      sla_days: {critical: 3, high: 7, medium: 30, low: 90, info: null}   # null: no due date
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sentinel.models import Finding, Severity

DEFAULT_SLA_DAYS: dict[Severity, int | None] = {
    Severity.CRITICAL: 3,
    Severity.HIGH: 7,
    Severity.MEDIUM: 30,
    Severity.LOW: 90,
    Severity.INFO: None,
}


class FindingsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exceptions: Path | None = None
    sla_days: dict[Severity, int | None] = Field(default_factory=lambda: dict(DEFAULT_SLA_DAYS))

    def days_for(self, severity: Severity) -> int | None:
        return self.sla_days.get(severity, DEFAULT_SLA_DAYS[severity])


def due_at(finding: Finding, policy: FindingsSettings) -> datetime | None:
    """When the finding must be fixed: first seen + the SLA of its severity (None: no SLA)."""
    days = policy.days_for(finding.severity)
    return None if days is None else finding.first_seen + timedelta(days=days)


def is_overdue(finding: Finding, policy: FindingsSettings, now: datetime) -> bool:
    """Active (open or acknowledged) and past its due date. Suppressed and resolved ones are never overdue."""
    due = due_at(finding, policy)
    return finding.status.is_active and due is not None and now > due
