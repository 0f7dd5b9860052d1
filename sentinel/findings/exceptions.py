"""Exceptions (accepted risks) as a reviewed YAML file, so auditors can read them and they survive a
rebuilt store. Each sweep re-applies the file: matching active findings are suppressed until the
exception's expiry (audited, actor `exception:<id>`); a withdrawn exception lifts its suppressions; an
expired one lets them reopen through the ordinary suppression expiry.

    exceptions:
      - id: EXC-2026-001
        rule: port_undeclared_closed
        system: street-records
        target: "10.20.3.4:8080/tcp"     # optional: without it, every target of the rule on the system
        owner: 王工 (XX街道办事处)
        justification: Vendor maintenance port, firewalled to the vendor's address; removal planned in Q1.
        approved_by: 李主任 (区网信办)
        approved_on: 2026-11-20
        expires: 2027-02-28
        ticket: SEC-1234                  # optional
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sentinel.errors import InputError, Problem
from sentinel.findings.lifecycle import LifecycleEvent
from sentinel.findings.tracker import SYSTEM_ACTOR, FindingTracker
from sentinel.models import Finding, FindingStatus
from sentinel.models.finding import ACTIVE_STATUSES
from sentinel.yamlio import LineDict, LineList, load_yaml_file, validation_problems

ACTOR_PREFIX = "exception:"
MAX_TERM = timedelta(days=366)  # an accepted risk is reviewed at least yearly


class RiskException(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    rule: str = Field(min_length=3)
    system: str = Field(min_length=1)
    target: str | None = None
    owner: str = Field(min_length=2)
    justification: str = Field(min_length=10)
    approved_by: str = Field(min_length=2)
    approved_on: date
    expires: date
    ticket: str | None = None

    @model_validator(mode="after")
    def _term(self) -> RiskException:
        if self.expires <= self.approved_on:
            raise ValueError("'expires' must be after 'approved_on'")
        if self.expires - self.approved_on > MAX_TERM:
            raise ValueError("an exception may run for at most one year; renew it after review")
        return self

    @property
    def expires_at(self) -> datetime:
        """End of the expiry day, UTC."""
        return datetime.combine(self.expires, time.max, tzinfo=UTC)

    def active(self, now: datetime) -> bool:
        return now <= self.expires_at

    def matches(self, f: Finding) -> bool:
        return f.rule_id == self.rule and f.system_id == self.system and self.target in (None, f.target)

    def reason(self) -> str:
        ticket = f", ticket {self.ticket}" if self.ticket else ""
        return (
            f"accepted risk {self.id}: {self.justification} (owner {self.owner}; approved by {self.approved_by} "
            f"on {self.approved_on.isoformat()}{ticket})"
        )


class ExceptionsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    exceptions: list[RiskException] = Field(default_factory=list)


def load_exceptions(path: Path) -> list[RiskException]:
    """Parse and validate the file; every problem at once as FILE:LINE."""
    data = load_yaml_file(path)
    if data is None:
        return []
    if not isinstance(data, dict):
        raise InputError([Problem(str(path), 1, "an exceptions file must be a mapping with 'exceptions:'")])
    try:
        parsed = ExceptionsFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, data, str(path))) from None
    problems: list[Problem] = []
    seen: set[str] = set()
    items = data.get("exceptions") if isinstance(data, LineDict) else None
    for index, exc_ in enumerate(parsed.exceptions):
        if exc_.id in seen:
            line = items.item_lines[index] if isinstance(items, LineList) else None
            problems.append(Problem(str(path), line, f"duplicate exception id '{exc_.id}'"))
        seen.add(exc_.id)
    if problems:
        raise InputError(problems)
    return parsed.exceptions


@dataclass
class ExceptionChanges:
    suppressed: list[Finding] = field(default_factory=list)
    lifted: list[Finding] = field(default_factory=list)


def apply_exceptions(tracker: FindingTracker, exceptions: Iterable[RiskException], now: datetime) -> ExceptionChanges:
    """Bring the store in line with the exceptions file (idempotent; every change audited)."""
    active = [e for e in exceptions if e.active(now)]
    by_id = {e.id: e for e in active}
    changes = ExceptionChanges()
    rules = sorted({e.rule for e in active})
    candidates = tracker.store.list_findings(statuses=list(ACTIVE_STATUSES), rule_ids=rules)
    for f in candidates if rules else []:
        match = next((e for e in active if e.matches(f)), None)
        if match is not None:
            tracker.act(f, LifecycleEvent.SUPPRESS, ACTOR_PREFIX + match.id, match.reason(), now, match.expires_at)
            changes.suppressed.append(f)
    for f in tracker.store.list_findings(statuses=[FindingStatus.SUPPRESSED]):
        if not (f.status_by or "").startswith(ACTOR_PREFIX):
            continue
        match = by_id.get((f.status_by or "")[len(ACTOR_PREFIX) :])
        if match is None or not match.matches(f):
            if f.suppressed_until is not None and f.suppressed_until <= now:
                continue  # expired: the ordinary suppression expiry reopens it
            reason = f"{f.status_by} withdrawn from the exceptions file"
            tracker.act(f, LifecycleEvent.UNSUPPRESS, SYSTEM_ACTOR, reason, now)
            changes.lifted.append(f)
        elif f.suppressed_until != match.expires_at:
            tracker.act(f, LifecycleEvent.SUPPRESS, ACTOR_PREFIX + match.id, match.reason(), now, match.expires_at)
    return changes
