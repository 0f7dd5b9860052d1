"""`sentinel sinks ship [--sink NAME]` and `sentinel sinks status`: every sink's outbox queue."""

from __future__ import annotations

from pathlib import Path

import click

from sentinel.app import open_store
from sentinel.cli.common import build_settings, console, settings_options
from sentinel.errors import InputError, Problem
from sentinel.sinks import OutboxSink, build_sinks
from sentinel.sinks.outbox import installed_sinks, outbox_stats
from sentinel.sinks.shipper import Shipper

EXIT_UNREACHABLE = 3


def _chosen(sinks: list[OutboxSink], name: str | None) -> list[OutboxSink]:
    if name is None:
        return sinks
    chosen = [s for s in sinks if s.name == name]
    if not chosen:
        configured = ", ".join(s.name for s in sinks) or "none"
        raise InputError([Problem("--sink", None, f"'{name}' is not configured (configured sinks: {configured})")])
    return chosen


@click.group("sinks")
def sinks() -> None:
    """Sinks: ship their outbox queues, show their state."""


@sinks.command("ship")
@settings_options
@click.option("--sink", "name", help="Only this sink (default: every configured sink).")
@click.option(
    "--timeout", type=click.FloatRange(min=0), help="Seconds to keep retrying each sink (default: its ship_timeout)."
)
def ship(config_file: Path | None, store: Path | None, name: str | None, timeout: float | None) -> None:
    """Drain the queues once. Exit 0 when empty; 3 if a sink stays unreachable (nothing is lost)."""
    settings = build_settings(config_file, store=store)
    chosen = _chosen(build_sinks(settings), name)
    db = open_store(settings.store)
    failed = 0
    try:
        for sink in chosen:
            report = Shipper(db, sink).drain(timeout=timeout)
            stats = outbox_stats(db, sink.name)
            click.echo(
                f"{sink.name}: shipped {report.shipped}, already present {report.deduplicated}, dead-lettered "
                f"{report.dead_lettered}, retried {report.retried}; {report.remaining} left in the outbox "
                f"({stats.dead_letters} dead letters kept)."
            )
            if report.remaining:
                failed += 1
                reason = "another shipper is draining it" if report.busy else report.last_error or "retries pending"
                click.echo(f"error: {sink.describe()} did not take everything: {reason}.", err=True)
    finally:
        for sink in chosen:
            sink.close()
        db.close()
    if failed:
        raise click.exceptions.Exit(EXIT_UNREACHABLE)


@sinks.command("status")
@settings_options
def status(config_file: Path | None, store: Path | None) -> None:
    """Queued rows, age of the oldest, dead letters and totals per sink."""
    settings = build_settings(config_file, store=store)
    names = {s.name for s in build_sinks(settings)}
    db = open_store(settings.store)
    out = console()
    try:
        for name in sorted(names | set(installed_sinks(db))):
            s = outbox_stats(db, name)
            state = "" if name in names else " (not configured)"
            out.print(
                f"{name}{state}: {s.depth} queued (oldest {s.oldest_age_seconds:.0f} s), {s.dead_letters} dead letters;"
                f" delivered {s.shipped_total}, deduplicated {s.deduplicated_total}, dropped {s.dropped_total}"
            )
    finally:
        db.close()
