"""Merge a sweep's verdicts into the stored findings: dedupe, count, resolve, reopen, audit."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sentinel.engine.accept import NoBaselineError, accept_baseline
from sentinel.engine.ruleset import Verdict
from sentinel.findings.lifecycle import InvalidTransitionError, LifecycleEvent, next_status
from sentinel.models import DEFAULT_OBSERVER, Finding, FindingStatus, Observer
from sentinel.models.finding import fingerprint

if TYPE_CHECKING:  # the store imports sinks, which import the tracker: keep this edge type-only
    from sentinel.store import SqliteStore

SYSTEM_ACTOR = "sentinel"
STILL_THERE = "re-check still shows the problem"
VERIFIED = "verified: the condition is no longer observed"


@dataclass
class ApplyResult:
    new: list[Finding] = field(default_factory=list)
    updated: list[Finding] = field(default_factory=list)
    resolved: list[Finding] = field(default_factory=list)
    reopened: list[Finding] = field(default_factory=list)
    #: active findings that became stale this sweep: observed, but the rule could not tell (not "touched")
    stale: list[Finding] = field(default_factory=list)
    #: rectified findings that were seen again (also in `updated`): back to acknowledged, the owner's again
    not_fixed: list[Finding] = field(default_factory=list)

    @property
    def touched(self) -> list[Finding]:
        return [*self.new, *self.updated, *self.resolved, *self.reopened]


Event = tuple[str, datetime, str, str | None, str, str | None]


class FindingTracker:
    """The only writer of finding state; both sweeps and operators go through it."""

    def __init__(self, store: SqliteStore, observer: Observer | None = None) -> None:
        """`observer`: whose verdicts `apply` records (the vantage is part of each finding's id); by default the
        store's recorded identity (the instance's site and vantage, recorded at its first ingest)."""
        self.store = store
        self._observer = observer

    @property
    def observer(self) -> Observer:
        return self._observer or self.store.identity() or DEFAULT_OBSERVER

    def apply(self, verdicts: Iterable[Verdict], now: datetime) -> ApplyResult:
        detected: dict[str, Verdict] = {}
        cleared: dict[str, Verdict] = {}
        unknown: set[str] = set()
        observer = self.observer
        for v in verdicts:
            fid = fingerprint(v.rule.id, v.system_id, v.target, observer.vantage)
            if v.present:
                detected[fid] = v
                cleared.pop(fid, None)
            elif v.present is None:
                unknown.add(fid)  # could not tell: never a change of status
            elif fid not in detected:
                cleared[fid] = v
        unknown -= detected.keys() | cleared.keys()  # another observation of the sweep did tell
        existing = self.store.findings_by_ids([*detected, *cleared, *unknown])
        result = ApplyResult()
        events: list[Event] = []
        changed: list[Finding] = []

        for fid, v in detected.items():
            old = existing.get(fid)
            rule = v.rule
            status = next_status(old.status if old else None, LifecycleEvent.DETECTED)
            if old is None:
                f = Finding(
                    id=fid,
                    rule_id=rule.id,
                    title=rule.title,
                    severity=rule.severity,
                    category=rule.category,
                    system_id=v.system_id,
                    target=v.target,
                    status=status,
                    first_seen=now,
                    last_seen=now,
                    occurrences=1,
                    evidence=v.evidence,
                    controls=rule.controls.flat(),
                    remediation=rule.remediation,
                    site=observer.site,
                    vantage=observer.vantage,
                )
                result.new.append(f)
                events.append((fid, now, SYSTEM_ACTOR, None, status.value, "first detected"))
            else:
                f = old
                f.title, f.severity, f.category = rule.title, rule.severity, rule.category
                f.controls, f.remediation = rule.controls.flat(), rule.remediation
                f.last_seen, f.occurrences, f.evidence = now, old.occurrences + 1, v.evidence
                f.stale_since = None  # confirmed again
                if old.status == FindingStatus.RESOLVED:
                    f.regression = True
                    f.resolved_at = None
                    f.status_reason = "seen again after it was resolved"
                    f.status_by = SYSTEM_ACTOR
                    result.reopened.append(f)
                    events.append((fid, now, SYSTEM_ACTOR, old.status.value, status.value, f.status_reason))
                elif old.status == FindingStatus.RECTIFIED:
                    # 复核 failed: back on the owner's list, with why
                    f.status_reason, f.status_by = STILL_THERE, SYSTEM_ACTOR
                    result.updated.append(f)
                    result.not_fixed.append(f)
                    events.append((fid, now, SYSTEM_ACTOR, old.status.value, status.value, STILL_THERE))
                else:
                    result.updated.append(f)
                f.status = status
            changed.append(f)

        for fid in cleared:
            old = existing.get(fid)
            if old is None:
                continue
            status = next_status(old.status, LifecycleEvent.CLEARED)
            if status != old.status:
                why = VERIFIED if old.status == FindingStatus.RECTIFIED else "condition no longer observed"
                events.append((fid, now, SYSTEM_ACTOR, old.status.value, status.value, why))
                old.status, old.resolved_at = status, now
                old.status_reason, old.status_by = why, SYSTEM_ACTOR
                old.stale_since = None
                result.resolved.append(old)
                changed.append(old)

        for fid in unknown:
            old = existing.get(fid)
            if old is None or not old.status.is_active or old.stale_since is not None:
                continue
            old.stale_since = now  # left as it is; shown as "last confirmed at last_seen"
            result.stale.append(old)
            changed.append(old)

        with self.store.transaction():
            self.store.save_findings(changed, at=now)
            self.store.add_events(events)
        return result

    def expire_suppressions(self, now: datetime) -> list[Finding]:
        """Suppressions past their expiry reopen (and are audited)."""
        expired = [
            f
            for f in self.store.list_findings(statuses=[FindingStatus.SUPPRESSED])
            if f.suppressed_until is not None and f.suppressed_until <= now
        ]
        for f in expired:
            self._transition(f, LifecycleEvent.UNSUPPRESS, SYSTEM_ACTOR, "suppression expired", now)
        return expired

    def act(
        self,
        finding: Finding,
        event: LifecycleEvent,
        actor: str,
        reason: str,
        now: datetime,
        until: datetime | None = None,
    ) -> Finding:
        """An operator's action (acknowledge, resolve, suppress, unsuppress, reopen, accept_baseline).

        `ACCEPT_BASELINE` also makes the finding's current value the rule's learned one (in the engine
        state, in the same transaction), so the next sweep compares against what the operator accepted."""
        self._transition(finding, event, actor, reason, now, until)
        return finding

    def note(self, finding: Finding, actor: str, reason: str, now: datetime) -> None:
        """A step that changes no status (a re-check requested, one that could not tell), kept in the history."""
        status = finding.status.value
        self.store.add_events([(finding.id, now, actor, status, status, reason)])

    def rectify(
        self, finding: Finding, actor: str, note: str, now: datetime, planned: datetime | None = None
    ) -> Finding:
        """The owner records the fix (整改): the finding waits, rectified, for a sweep or a re-check to verify it."""
        reason = note if planned is None else f"{note} (planned: {planned.date().isoformat()})"
        self._transition(finding, LifecycleEvent.RECTIFY, actor, reason, now, planned_fix=planned)
        return finding

    def _transition(
        self,
        f: Finding,
        event: LifecycleEvent,
        actor: str,
        reason: str,
        now: datetime,
        until: datetime | None = None,
        planned_fix: datetime | None = None,
    ) -> None:
        # Decide on the row as it is now, inside the write transaction: the caller's copy may be stale
        # (another operator, or a sweep, may have changed it since it was read).
        with self.store.transaction():
            current = self.store.get_finding(f.id) or f
            old = current.status
            current.status = next_status(old, event)
            if event == LifecycleEvent.ACCEPT_BASELINE:
                try:
                    accepted = accept_baseline(self.store, current, now)
                except NoBaselineError as exc:  # the engine has nothing to accept: the lifecycle refuses the event
                    raise InvalidTransitionError(str(exc)) from None
                reason = f"{reason} (accepted as the new baseline: {accepted})"
            if current.status == FindingStatus.RESOLVED:
                current.stale_since = None
            current.status_reason, current.status_by = reason, actor
            current.suppressed_until = until if event == LifecycleEvent.SUPPRESS else None
            if current.status == FindingStatus.RESOLVED:
                current.resolved_at = now
            elif event in (LifecycleEvent.REOPEN, LifecycleEvent.UNSUPPRESS):
                current.resolved_at = None
            if event == LifecycleEvent.RECTIFY:
                current.planned_fix = planned_fix
            self.store.save_findings([current], at=now)
            self.store.add_events([(f.id, now, actor, old.value, current.status.value, reason)])
        for name in f.__slots__:
            setattr(f, name, getattr(current, name))
