"""`sentinel alerts`: the SOC's terminal view of open findings, newest first, optionally following."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from sentinel.app import Sentinel
from sentinel.cli.common import EXIT_OK, SEVERITY_STYLE, age, build_app, console, registry_option, settings_options
from sentinel.cli.findings_cmd import status_text
from sentinel.models import Finding, Severity
from sentinel.models.finding import ACTIVE_STATUSES


def _active(app: Sentinel, min_severity: Severity | None) -> list[Finding]:
    return app.store.list_findings(statuses=list(ACTIVE_STATUSES), min_severity=min_severity)


def alerts_view(app: Sentinel, min_severity: Severity | None, limit: int) -> Group:
    found = _active(app, min_severity)
    found.sort(key=lambda f: (f.severity.rank, f.first_seen), reverse=True)
    counts = {s: sum(1 for f in found if f.severity == s) for s in Severity}
    header = Text("Open findings  ")
    for s in reversed(Severity):
        header.append(f" {s.value}: {counts[s]} ", style=SEVERITY_STYLE[s] if counts[s] else "dim")
    header.append(f"   {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC", style="dim")
    table = Table(header_style="bold", expand=True)
    for col in ("ID", "Severity", "Status", "System", "Owner", "Finding", "Target", "Age"):
        table.add_column(col, overflow="fold", no_wrap=col in ("ID", "Severity", "Age"))
    now = datetime.now(UTC)
    registry = app.registry if app.settings.registry is not None else None
    for f in found[:limit]:
        owner = registry.by_id[f.system_id].owner.department if registry and f.system_id in registry.by_id else ""
        table.add_row(
            f.id[:12],
            Text(f.severity.value, style=SEVERITY_STYLE[f.severity]),
            status_text(f, now),
            f.system_id,
            owner,
            f.title,
            f.target,
            age(f.first_seen, now),
        )
    if len(found) > limit:
        table.caption = f"{len(found) - limit} more not shown"
    return Group(header, table)


def _line(event: str, f: Finding, owner: str) -> str:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "\t".join([at, event, f.id[:12], f.severity.value, f.status.value, f.system_id, owner, f.title, f.target])


def _follow_lines(app: Sentinel, min_severity: Severity | None, interval: float) -> None:
    """Tab-separated lines, flushed as they happen: every active finding once (`active`), then `new`, `status`
    (a change such as acknowledged or rectified) and `closed` (resolved or suppressed) as later polls see them."""
    registry = app.registry if app.settings.registry is not None else None

    def owner(f: Finding) -> str:
        return registry.by_id[f.system_id].owner.department if registry and f.system_id in registry.by_id else ""

    known: dict[str, Finding] = {}
    first = True
    while True:
        current = {f.id: f for f in _active(app, min_severity)}
        lines = []
        for fid, f in current.items():
            old = known.get(fid)
            if old is None:
                lines.append(_line("active" if first else "new", f, owner(f)))
            elif old.status != f.status:
                lines.append(_line("status", f, owner(f)))
        for fid in known.keys() - current.keys():
            gone = app.store.get_finding(fid) or known[fid]
            lines.append(_line("closed", gone, owner(gone)))
        if lines:
            click.echo("\n".join(lines))
            sys.stdout.flush()
        known, first = current, False
        time.sleep(interval)


@click.command()
@settings_options
@registry_option("Registry, to show each system's owning department.")
@click.option("--severity", type=click.Choice([s.value for s in Severity]), help="At or above this severity.")
@click.option("--follow", "-f", is_flag=True, help="Keep refreshing (Ctrl-C to stop).")
@click.option("--interval", default=5.0, show_default=True, help="Refresh interval in seconds with --follow.")
@click.option("--limit", default=50, show_default=True, help="Rows to show.")
def alerts(
    config_file: Path | None,
    store: Path | None,
    registry_path: Path | None,
    severity: str | None,
    follow: bool,
    interval: float,
    limit: int,
) -> int:
    """Open findings by severity, newest first, with system, owner and age. Acknowledge with `findings ack`."""
    app = build_app(config_file, existing_store=True, store=store, registry=registry_path)
    if app.settings.registry is not None:
        _ = app.registry  # load (and validate) once, before the live view starts
    min_sev = Severity(severity) if severity else None
    out = console()
    try:
        if not follow:
            out.print(alerts_view(app, min_sev, limit))
            return EXIT_OK
        if not out.is_terminal:  # piped: a redrawn screen would print nothing; print one line per change instead
            _follow_lines(app, min_sev, interval)
            return EXIT_OK
        with Live(alerts_view(app, min_sev, limit), console=out, refresh_per_second=1, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(alerts_view(app, min_sev, limit))
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        app.close()
