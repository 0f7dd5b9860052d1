"""`sentinel serve`: the web view and API, /metrics and the blackbox-compatible /probe, read from the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from sentinel.cli.common import EXIT_OK, build_settings, console, registry_option, settings_options
from sentinel.errors import InputError, Problem
from sentinel.registry.loader import load_registry
from sentinel.web.listener import build_listener, parse_listen, serve_until_stopped


@click.command()
@click.option("--listen", help="HOST:PORT to serve on (default: serve.listen, 127.0.0.1:9108).")
@registry_option("Registry file or folder: enables the web view and adds tier/department labels to metrics.")
@click.option(
    "--compliance-interval",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds between checks for a changed store to re-assess compliance (needs a registry; 0 turns it off).",
)
@settings_options
def serve(
    listen: str | None,
    registry_path: Path | None,
    compliance_interval: float,
    config_file: Path | None,
    store: Path | None,
) -> int:
    """Serve the store over HTTP (no probing happens here); stops on SIGTERM or Ctrl-C."""
    settings = build_settings(config_file, store=store, registry=registry_path)
    address = listen or settings.serve.listen
    try:
        parse_listen(address)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    if not settings.store.exists():
        raise InputError([Problem(str(settings.store), None, "no such store (run 'sentinel scan' first, or --store)")])
    registry = load_registry(settings.registry) if settings.registry is not None else None
    app = build_listener(settings, lambda: registry, compliance_interval=compliance_interval)

    def ready(url: str) -> None:
        what = f"{len(registry.systems)} registered systems" if registry else "no registry: metrics only"
        console(stderr=True).print(f"Serving {settings.store} on {url} (/metrics, /probe, web view; {what})")

    try:
        asyncio.run(serve_until_stopped(app, address, ready))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {address}: {exc.strerror or exc}") from None
    return EXIT_OK
