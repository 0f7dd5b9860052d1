"""Early warnings: the file format, the rule each one becomes, and the book that holds them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel.advisories.book import AdvisoryBook
from sentinel.advisories.loader import parse_advisory_file
from sentinel.advisories.model import Advisory, advisory_of_rule
from sentinel.errors import InputError
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Observation
from sentinel.store import SqliteStore

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "advisory.yaml"


def banner(version: str | None, product: str = "nginx") -> Observation:
    data = {"product": product, "version": version, "address": "10.0.0.1", "port": 80}
    return Observation("banner", "sys-1", "10.0.0.1:80", datetime(2026, 12, 2, tzinfo=UTC), "banners", data=data)


def test_example_becomes_a_rule_that_matches_only_the_affected_versions() -> None:
    advisory = parse_advisory_file(EXAMPLE)
    rule = advisory.to_rule()
    assert rule.id == "advisory_2026_017" and advisory_of_rule(rule.id) == "2026_017"
    assert "2026-12-15T18:00+08:00" in rule.remediation and "整改时限" in rule.remediation_zh
    assert rule.title.startswith("[2026-017]") and rule.title_zh.startswith("【预警通报 2026-017】")
    versions = ("1.11.3", "1.11.4", "1.22.1", "1.26.2", "1.26.3", "1.27.3", "1.27.4", "1.28.0", "0.8.1")
    verdicts = {v: rule.compiled(banner(v).get) for v in versions}
    assert [v for v, hit in verdicts.items() if hit] == ["1.11.4", "1.22.1", "1.26.2", "1.27.3"]
    # no version, or another product: the precondition is not met, so no verdict at all (not "fine")
    assert rule.guard is not None
    assert not rule.guard(banner(None).get) and not rule.guard(banner("1.22.1", "apache").get)


def test_a_bad_warning_file_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "w.yaml"
    bad.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace("severity: medium", "severity: urgent"), encoding="utf-8"
    )
    with pytest.raises(InputError) as caught:
        parse_advisory_file(bad)
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if text.startswith("severity:"))
    assert [(p.file, p.line) for p in caught.value.problems] == [(str(bad), line)]
    assert "severity" in str(caught.value)


def test_deadline_must_follow_issue_and_regex_is_checked(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    early = tmp_path / "early.yaml"
    early.write_text(text.replace("2026-12-15T18:00:00+08:00", "2026-11-30T18:00:00+08:00"), encoding="utf-8")
    with pytest.raises(InputError, match="deadline: must be after issued_at"):
        parse_advisory_file(early)
    hostile = tmp_path / "hostile.yaml"
    hostile.write_text(text.replace("value: '^1\\.26", "value: '(a)\\1\\.26"), encoding="utf-8")
    with pytest.raises(InputError, match="match"):  # a back-reference (no linear-time engine) is refused as in rules
        parse_advisory_file(hostile)
    with pytest.raises(InputError, match="no such warning file"):
        parse_advisory_file(tmp_path / "absent.yaml")


def test_book_keeps_warnings_queues_changes_once_and_withdraws() -> None:
    store = SqliteStore(":memory:")
    published: list[tuple[str, list[str]]] = []
    store.add_write_hook(lambda _db, what, items: published.append((what, [a.id for a in items])))
    book = AdvisoryBook(store)
    advisory = parse_advisory_file(EXAMPLE)
    assert book.save([advisory]) == [advisory]
    assert book.save([advisory]) == []  # same text again (a repeated sync): nothing new, nothing queued
    assert published == [("advisories", ["2026-017"])]
    assert book.get("2026-017") == advisory and book.all(active_only=True) == [advisory]
    at = datetime(2026, 12, 3, tzinfo=UTC)
    withdrawn, retired = book.withdraw(advisory, at, FindingTracker(store), "soc", "false alarm")
    assert not withdrawn.active and retired == []
    assert book.all(active_only=True) == [] and book.all()[0].withdrawn_at == at
    assert published[-1] == ("advisories", ["2026-017"])  # the withdrawal travels like the warning


def test_model_refuses_unknown_keys_and_bad_ids() -> None:
    base = parse_advisory_file(EXAMPLE).model_dump(by_alias=True, exclude_none=True)
    with pytest.raises(ValueError, match="extra"):
        Advisory.model_validate({**base, "colour": "red"})
    with pytest.raises(ValueError, match="not a valid warning id"):
        Advisory.model_validate({**base, "id": "../etc"})
    with pytest.raises(ValueError, match="not a site name"):
        Advisory.model_validate({**base, "issued_by": "City Hall"})
