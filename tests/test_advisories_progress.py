"""advisories/progress.py: the city's table of site × affected × acknowledged × rectified × verified × overdue."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from sentinel.advisories import by_site
from sentinel.advisories.loader import parse_advisory_file
from sentinel.models import Finding, FindingStatus, Severity

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "advisory.yaml"
ADVISORY = parse_advisory_file(EXAMPLE)
RULE = ADVISORY.rule_id
BEFORE, AFTER = ADVISORY.deadline - timedelta(days=1), ADVISORY.deadline + timedelta(hours=1)


def finding(site: str, system: str, status: FindingStatus, target: str = "h:80", stale: bool = False) -> Finding:
    return Finding(
        id=f"{site}-{system}-{target}",
        rule_id=RULE,
        title=ADVISORY.title,
        severity=Severity.MEDIUM,
        category="exposure",
        system_id=system,
        target=target,
        status=status,
        first_seen=ADVISORY.issued_at,
        last_seen=ADVISORY.issued_at,
        occurrences=1,
        stale_since=ADVISORY.issued_at if stale else None,
        site=site,
    )


ESTATE = [
    finding("hexi-district", "a", FindingStatus.OPEN),
    finding("hexi-district", "b", FindingStatus.ACKNOWLEDGED),
    finding("hexi-district", "c", FindingStatus.RECTIFIED),
    finding("hexi-district", "d", FindingStatus.RESOLVED),
    # one system, two targets: only as far as its least advanced one
    finding("hexi-district", "e", FindingStatus.RESOLVED, "h:80"),
    finding("hexi-district", "e", FindingStatus.OPEN, "h:8080", stale=True),
    finding("jiangbei-district", "f", FindingStatus.RESOLVED),
    finding("jiangbei-district", "g", FindingStatus.SUPPRESSED),
    # another rule's finding is not the warning's
    dataclasses.replace(finding("city", "z", FindingStatus.OPEN), rule_id="tls_cert_not_expired"),
]


def rows(now_after: bool) -> dict[str, tuple[int, ...]]:
    now = AFTER if now_after else BEFORE
    table = by_site(ADVISORY, ESTATE, now, sites=["city", "hexi-district", "jiangbei-district"])
    return {
        r.site: (r.affected, r.acknowledged, r.rectified, r.verified, r.overdue, r.suppressed, r.stale) for r in table
    }


def test_each_column_counts_systems_that_got_this_far() -> None:
    assert rows(now_after=False) == {
        "city": (0, 0, 0, 0, 0, 0, 0),  # listed (asked for), unaffected
        "hexi-district": (5, 3, 2, 1, 0, 0, 1),
        "jiangbei-district": (1, 1, 1, 1, 0, 1, 0),
    }


def test_past_the_deadline_every_unverified_system_is_overdue() -> None:
    table = rows(now_after=True)
    assert table["hexi-district"][4] == 4 and table["jiangbei-district"][4] == 0
    assert by_site(ADVISORY, [], AFTER) == []  # no sites asked for, none affected: no rows
