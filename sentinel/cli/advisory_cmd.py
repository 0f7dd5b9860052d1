"""`sentinel advisory issue|list|show|withdraw|progress`: early warnings (预警通报) and how each site answers them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table

from sentinel.advisories import Advisory, SiteProgress, by_site
from sentinel.advisories.book import AdvisoryBook
from sentinel.advisories.loader import parse_advisory_file
from sentinel.app import Sentinel
from sentinel.cli.common import age, build_app, console, format_option, render_findings, settings_options
from sentinel.errors import InputError, Problem


@click.group("advisory")
def advisory() -> None:
    """Early warnings (预警通报): issue one, see which systems it hits, track each site's rectification."""


def _book(app: Sentinel) -> AdvisoryBook:
    return AdvisoryBook(app.store)


def _held(app: Sentinel, advisory_id: str) -> Advisory:
    found = _book(app).get(advisory_id)
    if found is None:
        held = ", ".join(a.id for a in _book(app).all()) or "none"
        raise InputError([Problem("advisory", None, f"no early warning '{advisory_id}' here (held: {held})")])
    return found


@advisory.command("issue")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@settings_options
def issue(file: Path, config_file: Path | None, store: Path | None) -> None:
    """Issue the warning in FILE (YAML: id, title, severity, deadline, observation, match, remediation).

    It is recorded here and queued for the sinks that carry warnings to the other sites (Elasticsearch), in one
    transaction; every site evaluates it from its next sweep on."""
    warning = parse_advisory_file(file)
    app = build_app(config_file, store=store)
    if warning.issued_by != app.settings.site:
        raise InputError(
            [
                Problem(
                    str(file),
                    None,
                    f"issued_by '{warning.issued_by}' is not this site ('{app.settings.site}')",
                )
            ]
        )
    try:
        changed = _book(app).save([warning])
        app.ship()
    finally:
        app.close()
    state = "issued" if changed else "already issued, unchanged"
    click.echo(
        f"{warning.id}: {state} (rule {warning.rule_id}, severity {warning.severity.value}, deadline "
        f"{warning.deadline.isoformat(timespec='minutes')}). Sites evaluate it from their next sweep."
    )


@advisory.command("sync")
@settings_options
def sync(config_file: Path | None, store: Path | None) -> None:
    """Receive the other sites' warnings (and withdrawals) from the shared Elasticsearch cluster.
    `sentinel run` does this every `run.advisory_sync_every` seconds."""
    app = build_app(config_file, store=store)
    try:
        received, bad = app.receive_advisories()
    finally:
        app.close()
    for line in bad:
        click.echo(f"warning: {line}", err=True)
    if not received:
        click.echo("No new or changed early warnings.")
    for a in received:
        state = "withdrawn" if a.withdrawn_at is not None else f"deadline {a.deadline.isoformat(timespec='minutes')}"
        click.echo(f"{a.id}: received from {a.issued_by} ({a.severity.value}, {state}): {a.title}")


@advisory.command("list")
@settings_options
@format_option()
def list_(config_file: Path | None, store: Path | None, fmt: str) -> None:
    """The warnings held here, newest deadline last, with this site's affected systems."""
    app = build_app(config_file, existing_store=True, store=store)
    now = datetime.now(UTC)
    try:
        book = _book(app)
        rows = [(a, _local(book, a, app, now)) for a in book.all()]
    finally:
        app.close()
    if fmt == "json":
        for a, p in rows:
            click.echo(json.dumps({**_summary(a, now), "here": p.as_dict()}, ensure_ascii=False))
        return
    table = Table(header_style="bold")
    for column in ("ID", "Severity", "Issued by", "Deadline", "State", "Affected here", "Verified", "Overdue"):
        table.add_column(column, no_wrap=True)
    for a, p in rows:
        table.add_row(
            a.id,
            a.severity.value,
            a.issued_by,
            a.deadline.isoformat(timespec="minutes"),
            _state(a, now),
            str(p.affected),
            str(p.verified),
            str(p.overdue),
        )
    console().print(table if rows else "No early warnings held here.")


@advisory.command("show")
@click.argument("advisory_id")
@settings_options
def show(advisory_id: str, config_file: Path | None, store: Path | None) -> None:
    """One warning: what it looks for, and this site's findings for it."""
    app = build_app(config_file, existing_store=True, store=store)
    now = datetime.now(UTC)
    try:
        book = _book(app)
        warning = _held(app, advisory_id)
        findings = book.findings(warning)
    finally:
        app.close()
    out = console()
    out.print(f"[bold]{warning.id}[/bold] {warning.title}")
    if warning.title_zh:
        out.print(warning.title_zh)
    out.print(
        f"severity {warning.severity.value}, issued by {warning.issued_by} at "
        f"{warning.issued_at.isoformat(timespec='minutes')}, deadline {warning.deadline.isoformat(timespec='minutes')}"
        f" ({_state(warning, now)})"
    )
    out.print(f"observation: {', '.join(warning.observation)}; rule {warning.rule_id}")
    out.print(f"remediation: {warning.remediation}")
    render_findings(findings, "table", title=f"Findings here ({len(findings)})")


@advisory.command("withdraw")
@click.argument("advisory_id")
@click.option("--reason", required=True, help="Why it is withdrawn (kept in each finding's history).")
@settings_options
def withdraw(advisory_id: str, reason: str, config_file: Path | None, store: Path | None) -> None:
    """Withdraw a warning this site issued: its rule stops, and its open findings are suppressed with the reason."""
    app = build_app(config_file, existing_store=True, store=store)
    try:
        warning = _held(app, advisory_id)
        if warning.issued_by != app.settings.site:
            raise InputError(
                [Problem("advisory", None, f"{advisory_id} was issued by {warning.issued_by}; only it can withdraw it")]
            )
        _, retired = _book(app).withdraw(warning, datetime.now(UTC), app.tracker, app.settings.actor, reason)
        app.ship()
    finally:
        app.close()
    click.echo(f"{advisory_id}: withdrawn; {len(retired)} open finding(s) here suppressed.")


@advisory.command("progress")
@click.argument("advisory_id")
@click.option(
    "--estate",
    is_flag=True,
    help="Every site's row, read from the shared Elasticsearch cluster (the city's table); default: this site's.",
)
@settings_options
@format_option()
def progress(advisory_id: str, estate: bool, config_file: Path | None, store: Path | None, fmt: str) -> None:
    """Progress on a warning per site: affected systems, acknowledged, rectified, verified by re-probe, overdue."""
    app = build_app(config_file, existing_store=True, store=store)
    now = datetime.now(UTC)
    try:
        warning = _held(app, advisory_id)
        rows = _estate_rows(app, warning, now) if estate else [_local(_book(app), warning, app, now)]
    finally:
        app.close()
    print_progress(warning, rows, now, fmt)


def _estate_rows(app: Sentinel, warning: Advisory, now: datetime) -> list[SiteProgress]:
    from sentinel.sinks.elasticsearch.estate import EstateReader, EstateUnavailableError
    from sentinel.sinks.elasticsearch.settings import require_elasticsearch_settings

    es = require_elasticsearch_settings(app.settings)
    reader = EstateReader(es, policy=app.findings_policy)
    try:
        # every site that has shipped anything gets a row, affected or not (a district with none is news too)
        return by_site(warning, reader.rule_findings(warning.rule_id), now, sites=reader.sites())
    except EstateUnavailableError as exc:
        raise InputError([Problem(reader.url, None, str(exc))]) from None
    finally:
        reader.close()


def print_progress(warning: Advisory, rows: list[SiteProgress], now: datetime, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({**_summary(warning, now), "sites": [r.as_dict() for r in rows]}, ensure_ascii=False))
        return
    table = Table(title=f"{warning.id}: {warning.title} ({_state(warning, now)})", header_style="bold")
    columns = ("Site", "Affected", "Acknowledged", "Rectified", "Verified", "Overdue", "Suppressed", "Stale")
    for column in columns:
        table.add_column(column, no_wrap=True, justify="left" if column == "Site" else "right")
    for r in rows:
        cells = (r.affected, r.acknowledged, r.rectified, r.verified, r.overdue, r.suppressed, r.stale)
        table.add_row(r.site, *(str(n) for n in cells))
    console().print(table)


def _local(book: AdvisoryBook, warning: Advisory, app: Sentinel, now: datetime) -> SiteProgress:
    return by_site(warning, book.findings(warning), now, sites=[app.settings.site])[0]


def _state(warning: Advisory, now: datetime) -> str:
    if warning.withdrawn_at is not None:
        return "withdrawn"
    if now > warning.deadline:
        return f"past deadline by {age(warning.deadline, now)}"
    return f"due in {age(now, warning.deadline)}"


def _summary(warning: Advisory, now: datetime) -> dict[str, object]:
    return {
        "id": warning.id,
        "title": warning.title,
        "severity": warning.severity.value,
        "issued_by": warning.issued_by,
        "issued_at": warning.issued_at.isoformat(),
        "deadline": warning.deadline.isoformat(),
        "state": _state(warning, now),
        "rule_id": warning.rule_id,
    }
