"""`sentinel notify`: send the owner digests that are due now."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from sentinel.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    build_app,
    console,
    registry_option,
    require_store,
    settings_options,
)
from sentinel.notify.notifier import Notifier


@click.command()
@registry_option("Registry file or folder (owners' addresses come from it).")
@settings_options
@click.option("--dry-run", is_flag=True, help="Show what would be sent, and send nothing.")
def notify(registry_path: Path | None, config_file: Path | None, store: Path | None, dry_run: bool) -> int:
    """Send each owner a digest of new, reopened and resolved findings on their own systems."""
    app = build_app(config_file, registry=registry_path, store=store)
    settings = app.settings.notify
    if settings.smtp is None and not settings.webhooks:
        raise click.UsageError("no channel configured: set notify.smtp and/or notify.webhooks in sentinel.yaml")
    require_store(app.settings)
    try:
        report = Notifier(settings, app.registry, app.store, policy=app.findings_policy, rules=app.ruleset.by_id).run(
            datetime.now(UTC), dry_run=dry_run
        )
    finally:
        app.close()
    out = console()
    for d in report.planned:
        out.print(
            f"would send via {d.channel} to {d.digest.recipient.key}: {d.subject} ({len(d.digest.events)} items)",
            markup=False,
        )
    for d in report.sent:
        out.print(f"sent via {d.channel} to {d.digest.recipient.key}: {d.subject}", markup=False)
    for d in report.failed:
        out.print(f"[red]failed[/red] via {d.channel} to {d.digest.recipient.key}: {d.error} (will retry next run)")
    if not (report.planned or report.sent or report.failed):
        out.print("Nothing is due.")
    return EXIT_FINDINGS if report.failed else EXIT_OK
