"""Due dates from severity, overdue display, and exceptions (accepted risks) as a reviewed YAML file
that is re-applied each sweep and survives a rebuilt store."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli.findings_cmd import findings
from sentinel.errors import InputError
from sentinel.findings.exceptions import apply_exceptions, load_exceptions
from sentinel.findings.policy import FindingsSettings, due_at, is_overdue
from sentinel.findings.tracker import FindingTracker
from sentinel.models import FindingStatus, Observation, ObservationStatus, Severity
from sentinel.registry.models import Endpoint, Owner, Registry, System, Tier
from sentinel.registry.scope import Scope
from sentinel.store import SqliteStore
from tests.support.engine_lab import shipped_ruleset

Write = Callable[[str, str], Path]
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
REGISTRY = Registry(
    scope=Scope(allow=["10.20.0.0/16"]),
    systems=(
        System(
            id="records",
            name="档案",
            owner=Owner(department="街道办"),
            tier=Tier.STREET,
            mlps_level=2,
            endpoints=[Endpoint(host="10.20.0.6", ports=[443])],
        ),
    ),
)
EXCEPTIONS = """
exceptions:
  - id: EXC-2026-001
    rule: port_undeclared_closed
    system: records
    target: "10.20.0.6:8080/tcp"
    owner: 王工 (街道办)
    justification: Vendor maintenance port, firewalled to the vendor address.
    approved_by: 李主任 (区网信办)
    approved_on: 2026-10-20
    expires: 2026-12-31
    ticket: SEC-12
"""


def sweep(tracker: FindingTracker, at: datetime, open_ports: list[int]) -> None:
    rules = shipped_ruleset()
    observations = [
        Observation(
            "port",
            "records",
            f"10.20.0.6:{p}/tcp",
            at,
            "tcp_ports",
            ObservationStatus.OK,
            {"state": "open" if p in open_ports else "closed", "declared": p == 443, "high_risk": False},
        )
        for p in (443, 8080, 8443)
    ]
    tracker.apply(rules.evaluate_stateless(observations, REGISTRY), at)


def test_due_dates_and_overdue_follow_the_sla(tmp_path: Path) -> None:
    tracker = FindingTracker(SqliteStore(tmp_path / "s.db"))
    sweep(tracker, T0, [443, 8080])
    (f,) = tracker.store.list_findings()
    policy = FindingsSettings(sla_days={Severity.MEDIUM: 10})
    assert f.severity == Severity.MEDIUM and due_at(f, policy) == T0 + timedelta(days=10)
    assert not is_overdue(f, policy, T0 + timedelta(days=9))
    assert is_overdue(f, policy, T0 + timedelta(days=11))
    assert FindingsSettings().days_for(Severity.CRITICAL) == 3
    assert due_at(f, FindingsSettings(sla_days={Severity.MEDIUM: None})) is None
    f.status = FindingStatus.SUPPRESSED
    assert not is_overdue(f, policy, T0 + timedelta(days=11))


def test_exceptions_suppress_lift_and_survive_a_rebuilt_store(tmp_path: Path, write_file: Write) -> None:
    file = write_file("exceptions.yaml", EXCEPTIONS)
    items = load_exceptions(file)
    for db in ("first.db", "rebuilt.db"):  # the file, not the store, is the record
        tracker = FindingTracker(SqliteStore(tmp_path / db))
        sweep(tracker, T0, [443, 8080, 8443])
        changes = apply_exceptions(tracker, items, T0)
        assert [f.target for f in changes.suppressed] == ["10.20.0.6:8080/tcp"]
        by_target = {f.target: f for f in tracker.store.list_findings()}
        accepted = by_target["10.20.0.6:8080/tcp"]
        assert accepted.status == FindingStatus.SUPPRESSED and accepted.status_by == "exception:EXC-2026-001"
        assert accepted.suppressed_until == datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
        assert "owner 王工" in (accepted.status_reason or "") and "ticket SEC-12" in (accepted.status_reason or "")
        assert by_target["10.20.0.6:8443/tcp"].status == FindingStatus.OPEN
        assert apply_exceptions(tracker, items, T0).suppressed == []  # idempotent
    events = tracker.store.finding_events(accepted.id)
    assert [e["to_status"] for e in events] == ["open", "suppressed"]
    # withdrawn from the file: the suppression is lifted, audited
    lifted = apply_exceptions(tracker, [], T0 + timedelta(days=1))
    assert [f.id for f in lifted.lifted] == [accepted.id]
    assert (
        tracker.store.finding_events(accepted.id)[-1]["reason"]
        == "exception:EXC-2026-001 withdrawn from the exceptions file"
    )


def test_expired_exceptions_reopen_through_suppression_expiry(tmp_path: Path, write_file: Write) -> None:
    tracker = FindingTracker(SqliteStore(tmp_path / "s.db"))
    items = load_exceptions(write_file("exceptions.yaml", EXCEPTIONS))
    sweep(tracker, T0, [443, 8080])
    apply_exceptions(tracker, items, T0)
    after = datetime(2027, 1, 1, 0, 1, tzinfo=UTC)
    assert apply_exceptions(tracker, items, after).suppressed == []
    reopened = tracker.expire_suppressions(after)
    assert [f.status for f in reopened] == [FindingStatus.OPEN]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("expires: 2026-12-31", "expires: 2026-10-01"), "'expires' must be after 'approved_on'"),
        (("expires: 2026-12-31", "expires: 2028-01-01"), "at most one year"),
        (("    owner: 王工 (街道办)\n", ""), "owner: Field required"),
        (("ticket: SEC-12", "ticket: SEC-12\n    colour: red"), "unknown key 'colour'"),
    ],
)
def test_exception_files_are_reviewed_strictly(write_file: Write, edit: tuple[str, str], message: str) -> None:
    path = write_file("exceptions.yaml", EXCEPTIONS.replace(*edit))
    with pytest.raises(InputError) as err:
        load_exceptions(path)
    assert message in str(err.value) and "exceptions.yaml:" in str(err.value)


def test_duplicate_exception_ids_are_located(write_file: Write) -> None:
    body = EXCEPTIONS + EXCEPTIONS.split("exceptions:\n", 1)[1]
    with pytest.raises(InputError) as err:
        load_exceptions(write_file("exceptions.yaml", body))
    assert "exceptions.yaml:12: duplicate exception id 'EXC-2026-001'" in str(err.value)


def test_cli_shows_due_and_overdue_and_exceptions(tmp_path: Path, write_file: Write) -> None:
    store = SqliteStore(tmp_path / "s.db")
    tracker = FindingTracker(store)
    long_ago = datetime.now(UTC) - timedelta(days=60)
    sweep(tracker, long_ago, [443, 8080, 8443])
    store.close()
    db = str(tmp_path / "s.db")
    listed = CliRunner().invoke(
        findings, ["list", "--store", db, "--overdue", "--format", "json"], standalone_mode=False
    )
    rows = json.loads(listed.output)
    assert len(rows) == 2 and all(r["overdue"] and r["due_at"] for r in rows)
    table = CliRunner().invoke(findings, ["list", "--store", db], standalone_mode=False)
    assert "Due" in table.output and "overdue" in table.output
    shown = CliRunner().invoke(findings, ["show", rows[0]["id"][:12], "--store", db], standalone_mode=False)
    assert "(OVERDUE)" in shown.output
    file = write_file("exceptions.yaml", EXCEPTIONS)
    listed = CliRunner().invoke(
        findings, ["exceptions", "--store", db, "--exceptions", str(file), "--format", "json"], standalone_mode=False
    )
    (row,) = json.loads(listed.output)
    assert row["id"] == "EXC-2026-001" and row["state"] in ("active", "expired") and row["expires"] == "2026-12-31"
    assert date.fromisoformat(row["approved_on"]) == date(2026, 10, 20)
