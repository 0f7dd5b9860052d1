"""`sentinel findings list|show|history|exceptions|ack|rectify|resolve|suppress|reopen|accept-baseline`."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from sentinel.app import RecheckError, Sentinel
from sentinel.cli.common import (
    EXIT_OK,
    SEVERITY_STYLE,
    age,
    build_app,
    console,
    format_option,
    parse_when,
    registry_option,
    render_findings,
    settings_options,
)
from sentinel.findings.exceptions import ACTOR_PREFIX, load_exceptions
from sentinel.findings.lifecycle import InvalidTransitionError, LifecycleEvent
from sentinel.findings.policy import FindingsSettings, due_at, is_overdue
from sentinel.models import Finding, FindingStatus, Severity


@click.group()
def findings() -> None:
    """Look at findings and act on them (every action is recorded with who and why)."""


exceptions_option = click.option(
    "--exceptions",
    "exceptions_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Exceptions (accepted risks) file; default: 'findings.exceptions' in the settings.",
)


def _policy(app: Sentinel, exceptions_file: Path | None = None) -> FindingsSettings:
    policy = app.findings_policy
    if exceptions_file is not None:
        policy = policy.model_copy(update={"exceptions": exceptions_file})
    return policy


def _due_text(f: Finding, policy: FindingsSettings, now: datetime) -> Text:
    due = due_at(f, policy)
    if due is None or not f.status.is_active:
        return Text("-")
    if is_overdue(f, policy, now):
        return Text(f"overdue {age(due, now)}", style="bold red")
    return Text(f"in {age(now, due)}")


def _table(found: list[Finding], policy: FindingsSettings, now: datetime) -> Table:
    table = Table(header_style="bold")
    for name, opts in (
        ("ID", {"no_wrap": True}),
        ("Severity", {"no_wrap": True}),
        ("Status", {"no_wrap": True}),
        ("System", {"overflow": "fold"}),
        ("Finding", {"overflow": "fold", "min_width": 24, "ratio": 3}),
        ("Target", {"overflow": "fold", "ratio": 2}),
        ("Seen", {"justify": "right", "no_wrap": True}),
        ("Since", {"justify": "right", "no_wrap": True}),
        ("Due", {"no_wrap": True}),
    ):
        table.add_column(name, **opts)
    for f in found:
        table.add_row(
            f.id[:12],
            Text(f.severity.value, style=SEVERITY_STYLE[f.severity]),
            status_text(f, now),
            f.system_id,
            f.title,
            f.target,
            str(f.occurrences),
            age(f.first_seen, now),
            _due_text(f, policy, now),
        )
    return table


def status_text(f: Finding, now: datetime) -> Text:
    """The status, with "(regression)" and, when the last sweeps could not confirm it, how stale it is."""
    text = Text(f.status.value + (" (regression)" if f.regression else ""))
    if f.is_stale:
        text.append(f"\nstale: last confirmed {age(f.last_seen, now)} ago", style="yellow")
    return text


def _with_due(f: Finding, policy: FindingsSettings, now: datetime) -> dict[str, object]:
    row = f.to_dict()
    due = due_at(f, policy)
    row["due_at"] = due.isoformat() if due else None
    row["overdue"] = is_overdue(f, policy, now)
    return row


def _resolve_id(app: Sentinel, prefix: str) -> Finding:
    if len(prefix) < 4:
        raise click.BadParameter("give at least 4 characters of the finding id", param_hint="ID")
    matches = app.store.findings_by_prefix(prefix)
    if not matches:
        raise click.BadParameter(f"no finding with id starting '{prefix}' in {app.settings.store}", param_hint="ID")
    if len(matches) > 1:
        raise click.BadParameter(f"'{prefix}' matches more than one finding; give more characters", param_hint="ID")
    return matches[0]


@findings.command("list")
@settings_options
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice([s.value for s in FindingStatus] + ["active", "all"]),
    help="Filter by status (repeatable; default: active = open and acknowledged).",
)
@click.option("--severity", type=click.Choice([s.value for s in Severity]), help="At or above this severity.")
@click.option("--system", "systems", multiple=True, help="Only these system ids (repeatable).")
@click.option("--overdue", is_flag=True, help="Only findings past their due date (SLA by severity).")
@format_option(("table", "json", "csv"))
def list_(
    config_file: Path | None,
    store: Path | None,
    statuses: tuple[str, ...],
    severity: str | None,
    systems: tuple[str, ...],
    overdue: bool,
    fmt: str,
) -> int:
    """List findings, most severe first, with their due dates (overdue ones marked)."""
    app = build_app(config_file, existing_store=True, store=store)
    wanted: list[FindingStatus] | None
    if "all" in statuses:
        wanted = None
    else:
        names = set(statuses or ["active"])
        if "active" in names:
            names |= {"open", "acknowledged", "rectified"}
        wanted = [s for s in FindingStatus if s.value in names]
    found = app.store.list_findings(
        statuses=wanted, min_severity=Severity(severity) if severity else None, system_ids=list(systems) or None
    )
    policy, now = app.findings_policy, datetime.now(UTC)
    if overdue:
        found = [f for f in found if is_overdue(f, policy, now)]
    if fmt == "json":
        click.echo(json.dumps([_with_due(f, policy, now) for f in found], ensure_ascii=False, indent=2))
    elif fmt == "table" and found:
        console().print(_table(found, policy, now))
    else:
        render_findings(found, fmt)
    return EXIT_OK


@findings.command()
@click.argument("finding_id")
@settings_options
@format_option()
def show(finding_id: str, config_file: Path | None, store: Path | None, fmt: str) -> int:
    """Show one finding in full (ID may be a unique prefix)."""
    app = build_app(config_file, existing_store=True, store=store)
    f = _resolve_id(app, finding_id)
    policy, now = app.findings_policy, datetime.now(UTC)
    if fmt == "json":
        click.echo(json.dumps(_with_due(f, policy, now), ensure_ascii=False, indent=2))
        return EXIT_OK
    out = console()
    out.print(f"[bold]{f.title}[/bold]")
    rows = [
        ("id", f.id),
        ("rule", f.rule_id),
        ("severity", f.severity.value),
        ("category", f.category),
        ("system", f.system_id),
        ("target", f.target),
        ("seen from", f"site {f.site}, vantage {f.vantage}" if f.vantage else "before sites (not yet adopted)"),
        ("status", f.status.value + (" (regression)" if f.regression else "")),
        ("first seen", f.first_seen.isoformat()),
        ("last seen", f.last_seen.isoformat()),
        *(
            [
                (
                    "stale",
                    f"could not be confirmed since {f.stale_since.isoformat()}; "
                    f"last confirmed at {f.last_seen.isoformat()}",
                )
            ]
            if f.is_stale and f.stale_since is not None
            else []
        ),
        ("occurrences", str(f.occurrences)),
        ("controls", ", ".join(f.controls)),
    ]
    if f.status_reason:
        rows.append(("status reason", f"{f.status_reason} ({f.status_by})"))
    if f.suppressed_until:
        rows.append(("suppressed until", f.suppressed_until.isoformat()))
    due = due_at(f, policy)
    if due is not None and f.status.is_active:
        late = " (OVERDUE)" if is_overdue(f, policy, now) else ""
        rows.append(("due", f"{due.isoformat()}{late}"))
    for k, v in rows:
        out.print(f"  {k:<17}{v}", markup=False, highlight=False)
    out.print("  evidence:")
    for k, v in f.evidence.items():
        out.print(f"    {k}: {v}", markup=False)
    out.print(f"  remediation:\n    {f.remediation.strip()}", markup=False)
    return EXIT_OK


@findings.command()
@click.argument("finding_id")
@settings_options
@format_option()
def history(finding_id: str, config_file: Path | None, store: Path | None, fmt: str) -> int:
    """Every recorded change of a finding: who, when, why, from and to."""
    app = build_app(config_file, existing_store=True, store=store)
    f = _resolve_id(app, finding_id)
    events = app.store.finding_events(f.id)
    if fmt == "json":
        click.echo(json.dumps(events, ensure_ascii=False, indent=2))
        return EXIT_OK
    for e in events:
        click.echo(
            f"{e['at']}  {e['actor']:<12} {e['from_status'] or 'new':>12} -> {e['to_status']:<12} {e['reason'] or ''}"
        )
    return EXIT_OK


@findings.command("exceptions")
@settings_options
@exceptions_option
@format_option()
def exceptions_(config_file: Path | None, store: Path | None, exceptions_file: Path | None, fmt: str) -> int:
    """Accepted risks from the reviewed exceptions file, with their state and the findings they cover."""
    app = build_app(config_file, existing_store=True, store=store)
    path = _policy(app, exceptions_file).exceptions
    if path is None:
        raise click.UsageError("no exceptions file: give --exceptions PATH or 'findings: {exceptions: PATH}'")
    items = load_exceptions(path)
    now = datetime.now(UTC)
    covered: dict[str, list[str]] = {}
    for f in app.store.list_findings(statuses=[FindingStatus.SUPPRESSED]):
        if (f.status_by or "").startswith(ACTOR_PREFIX):
            covered.setdefault((f.status_by or "")[len(ACTOR_PREFIX) :], []).append(f.id[:12])
    rows = [
        {
            **e.model_dump(mode="json"),
            "state": "active" if e.active(now) else "expired",
            "findings": covered.get(e.id, []),
        }
        for e in items
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return EXIT_OK
    table = Table(header_style="bold", title=str(path))
    for col in ("ID", "State", "Rule", "System", "Target", "Owner", "Approved", "Expires", "Findings"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r["id"]),
            Text(str(r["state"]), style="green" if r["state"] == "active" else "red"),
            str(r["rule"]),
            str(r["system"]),
            str(r["target"] or "(all)"),
            str(r["owner"]),
            f"{r['approved_by']} {r['approved_on']}",
            str(r["expires"]),
            ", ".join(r["findings"]) or "-",
        )
    console().print(table)
    return EXIT_OK


def _action(event: LifecycleEvent, help_text: str, with_until: bool = False) -> click.Command:
    @click.argument("finding_id")
    @click.option("--reason", required=True, help="Why (recorded in the audit log).")
    @click.option("--by", "actor", help="Who is acting (default: settings 'actor' or $USER).")
    @settings_options
    def command(
        finding_id: str,
        reason: str,
        actor: str | None,
        config_file: Path | None,
        store: Path | None,
        until: str | None = None,
    ) -> int:
        if not reason.strip():
            raise click.BadParameter("say why (it goes into the audit log)", param_hint="--reason")
        app = build_app(config_file, existing_store=True, store=store, actor=actor)
        f = _resolve_id(app, finding_id)
        expiry = parse_when(until)
        now = datetime.now(UTC)
        if expiry is not None and expiry <= now:
            raise click.BadParameter("must be in the future", param_hint="--until")
        try:
            app.tracker.act(f, event, app.settings.actor, reason, now, expiry)
        except InvalidTransitionError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{f.id[:12]} {f.title}: now {f.status.value} (by {app.settings.actor}: {reason})")
        return EXIT_OK

    command.__doc__ = help_text
    if with_until:
        command = click.option("--until", help="Expiry date (ISO); the finding reopens after it.")(command)
    names = {LifecycleEvent.ACKNOWLEDGE: "ack", LifecycleEvent.ACCEPT_BASELINE: "accept-baseline"}
    return click.command(names.get(event, event.value))(command)


findings.add_command(_action(LifecycleEvent.ACKNOWLEDGE, "Acknowledge a finding: someone is on it."))
findings.add_command(_action(LifecycleEvent.RESOLVE, "Mark a finding resolved (it reopens if seen again)."))
findings.add_command(
    _action(LifecycleEvent.SUPPRESS, "Suppress a finding (accepted risk), optionally until a date.", with_until=True)
)
findings.add_command(_action(LifecycleEvent.UNSUPPRESS, "Lift a suppression."))
findings.add_command(_action(LifecycleEvent.REOPEN, "Reopen a resolved or acknowledged finding."))
findings.add_command(
    _action(
        LifecycleEvent.ACCEPT_BASELINE,
        "Accept a changed value (page content, DNS answer, banner, certificate, latency level) as the rule's new "
        "baseline and resolve the finding. Only for rules with 'change' or 'baseline'.",
    )
)


@findings.command()
@click.argument("finding_id")
@click.option("--note", required=True, help="What was done (recorded in the audit log).")
@click.option("--planned", help="Planned completion date (ISO), when the fix is not done yet.")
@click.option("--recheck", is_flag=True, help="Re-run the finding's probe on its target now (needs the registry).")
@click.option("--by", "actor", help="Who is acting (default: settings 'actor' or $USER).")
@registry_option("Registry (for --recheck).")
@settings_options
def rectify(
    finding_id: str,
    note: str,
    planned: str | None,
    recheck: bool,
    actor: str | None,
    registry_path: Path | None,
    config_file: Path | None,
    store: Path | None,
) -> int:
    """Record a rectification (整改); the finding stays 'rectified' until a sweep or --recheck verifies it (复核)."""
    if not note.strip():
        raise click.BadParameter("say what was done (it goes into the audit log)", param_hint="--note")
    app = build_app(config_file, existing_store=True, store=store, actor=actor, registry=registry_path)
    try:
        f = _resolve_id(app, finding_id)
        when = parse_when(planned)
        now = datetime.now(UTC)
        if when is not None and when.date() < now.date():
            raise click.BadParameter("must not be in the past", param_hint="--planned")
        try:
            app.tracker.rectify(f, app.settings.actor, note.strip(), now, when)
        except InvalidTransitionError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"{f.id[:12]} {f.title}: now {f.status.value} (by {app.settings.actor}: {note.strip()})")
        if recheck:
            try:
                after = asyncio.run(app.recheck(f.id, app.settings.actor))
            except RecheckError as exc:
                raise click.ClickException(f"re-check not run: {exc.message}") from None
            click.echo(f"{f.id[:12]} re-check: now {after.status.value} ({after.status_reason})")
        return EXIT_OK
    finally:
        app.close()
