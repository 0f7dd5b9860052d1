"""`sentinel es setup` and `sentinel es ship` (the Elasticsearch queue of the shared outbox; `sentinel sinks ship`
ships every sink's)."""

from __future__ import annotations

from pathlib import Path

import click
from elastic_transport import TransportError
from elasticsearch import ApiError

from sentinel.app import open_store
from sentinel.cli.common import build_settings, console, settings_options
from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.outbox import outbox_stats
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings, mask_url, require_elasticsearch_settings
from sentinel.sinks.elasticsearch.setup import Installer
from sentinel.sinks.elasticsearch.shipper import Shipper

EXIT_UNREACHABLE = 3


def _fail(es: ElasticsearchSettings, what: str, exc: Exception) -> click.exceptions.Exit:
    if isinstance(exc, ApiError):
        detail = f"HTTP {exc.status_code}: {exc.message}"
    else:
        detail = getattr(exc, "message", None) or str(exc)
    click.echo(f"error: {what} at {mask_url(es.url)} failed: {detail}", err=True)
    return click.exceptions.Exit(EXIT_UNREACHABLE)


@click.group("es")
def es() -> None:
    """Elasticsearch: install templates and ship findings and observations."""


@es.command("setup")
@settings_options
def setup(config_file: Path | None, store: Path | None) -> None:
    """Install the ILM policy, component/index templates, the latest-state index and data streams.

    Idempotent: objects that already match are left alone.
    """
    settings = build_settings(config_file, store=store)
    es_settings = require_elasticsearch_settings(settings)
    client = build_client(es_settings)
    try:
        steps = Installer(client, es_settings).install()
    except (ApiError, TransportError) as exc:
        raise _fail(es_settings, "setup", exc) from None
    finally:
        client.close()
    out = console()
    for step in steps:
        style = {"created": "green", "updated": "yellow"}.get(step.action, "dim")
        out.print(f"[{style}]{step.action:9}[/{style}] {step.kind:18} {step.name}")
    changed = sum(1 for s in steps if s.action != "unchanged")
    out.print(f"{changed} change{'s' if changed != 1 else ''} on {mask_url(es_settings.url)}.")


@es.command("ship")
@settings_options
@click.option("--timeout", type=click.FloatRange(min=0), help="Seconds to keep retrying (default: ship_timeout).")
def ship(config_file: Path | None, store: Path | None, timeout: float | None) -> None:
    """Drain the outbox once. Exit 0 when empty; 3 if Elasticsearch stays unreachable (nothing is lost)."""
    settings = build_settings(config_file, store=store)
    es_settings = require_elasticsearch_settings(settings)
    db = open_store(settings.store)
    client = build_client(es_settings)
    try:
        report = Shipper(db, client, es_settings).drain(timeout=timeout)
        stats = outbox_stats(db)
    finally:
        client.close()
        db.close()
    click.echo(
        f"shipped {report.shipped}, already present {report.deduplicated}, dead-lettered {report.dead_lettered}, "
        f"retried {report.retried}; {report.remaining} left in the outbox ({stats.dead_letters} dead letters kept)."
    )
    if report.remaining:
        reason = report.last_error or "retries pending"
        click.echo(
            f"error: Elasticsearch at {mask_url(es_settings.url)} did not take everything: {reason}. "
            f"{report.remaining} documents stay queued; run 'sentinel es ship' (or 'sentinel sinks ship') again.",
            err=True,
        )
        raise click.exceptions.Exit(EXIT_UNREACHABLE)
