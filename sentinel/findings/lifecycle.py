"""The finding lifecycle as one transition table (h11-style): every state change is looked up here."""

from __future__ import annotations

from enum import StrEnum

from sentinel.errors import SentinelError
from sentinel.models import FindingStatus

OPEN, ACK, RES, SUP = FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED, FindingStatus.RESOLVED, FindingStatus.SUPPRESSED
RECT = FindingStatus.RECTIFIED


class LifecycleEvent(StrEnum):
    DETECTED = "detected"  # a sweep saw the condition
    CLEARED = "cleared"  # a sweep checked and did not see it
    ACKNOWLEDGE = "acknowledge"  # an operator took it on
    RESOLVE = "resolve"  # an operator says it is fixed
    SUPPRESS = "suppress"  # accepted risk / false positive, with reason and optional expiry
    UNSUPPRESS = "unsuppress"  # the suppression was lifted or expired
    REOPEN = "reopen"  # an operator reopens by hand
    ACCEPT_BASELINE = "accept_baseline"  # an operator accepts the changed value as the rule's new baseline
    RECTIFY = "rectify"  # the owner says it is fixed (整改); a sweep or re-check verifies it (复核)


class InvalidTransitionError(SentinelError):
    pass


#: (current status or None for a new finding, event) -> next status
TRANSITIONS: dict[tuple[FindingStatus | None, LifecycleEvent], FindingStatus] = {
    (None, LifecycleEvent.DETECTED): OPEN,
    (OPEN, LifecycleEvent.DETECTED): OPEN,
    (ACK, LifecycleEvent.DETECTED): ACK,
    (RES, LifecycleEvent.DETECTED): OPEN,  # a regression
    (SUP, LifecycleEvent.DETECTED): SUP,
    (OPEN, LifecycleEvent.CLEARED): RES,
    (ACK, LifecycleEvent.CLEARED): RES,
    (SUP, LifecycleEvent.CLEARED): SUP,  # an accepted risk stays accepted until it expires
    (RES, LifecycleEvent.CLEARED): RES,
    (OPEN, LifecycleEvent.ACKNOWLEDGE): ACK,
    (OPEN, LifecycleEvent.RESOLVE): RES,
    (ACK, LifecycleEvent.RESOLVE): RES,
    (OPEN, LifecycleEvent.SUPPRESS): SUP,
    (ACK, LifecycleEvent.SUPPRESS): SUP,
    (RES, LifecycleEvent.SUPPRESS): SUP,
    (SUP, LifecycleEvent.SUPPRESS): SUP,  # change reason or expiry
    (SUP, LifecycleEvent.UNSUPPRESS): OPEN,
    (OPEN, LifecycleEvent.ACCEPT_BASELINE): RES,
    (ACK, LifecycleEvent.ACCEPT_BASELINE): RES,
    (RES, LifecycleEvent.REOPEN): OPEN,
    (ACK, LifecycleEvent.REOPEN): OPEN,
    # 通报 → 整改 → 复核: the owner records the fix; only evidence closes it
    (OPEN, LifecycleEvent.RECTIFY): RECT,
    (ACK, LifecycleEvent.RECTIFY): RECT,
    (RECT, LifecycleEvent.RECTIFY): RECT,  # a new note or planned date
    (RECT, LifecycleEvent.DETECTED): ACK,  # still there: back to the owner, who has it on their list
    (RECT, LifecycleEvent.CLEARED): RES,  # verified
    (RECT, LifecycleEvent.RESOLVE): RES,
    (RECT, LifecycleEvent.SUPPRESS): SUP,
    (RECT, LifecycleEvent.REOPEN): OPEN,
    (RECT, LifecycleEvent.ACCEPT_BASELINE): RES,
}

#: events an owner may apply to their own department's findings; the rest are the SOC operators'
OWNER_EVENTS = frozenset({LifecycleEvent.ACKNOWLEDGE, LifecycleEvent.RECTIFY})


def next_status(current: FindingStatus | None, event: LifecycleEvent) -> FindingStatus:
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        name = current.value if current else "new"
        allowed = sorted(e.value for (s, e) in TRANSITIONS if s == current)
        raise InvalidTransitionError(
            f"cannot {event.value} a finding that is {name} (allowed: {', '.join(allowed) or 'nothing'})"
        ) from None
