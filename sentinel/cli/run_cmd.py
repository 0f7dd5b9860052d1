"""`sentinel run`: the continuous monitor, with the web view, API and health endpoints on one listener."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click
from aiohttp import web

from sentinel.cli.common import EXIT_OK, build_settings, registry_option, settings_options, shard_option
from sentinel.config.settings import Settings
from sentinel.runtime.logs import configure_logging
from sentinel.runtime.monitor import Monitor
from sentinel.web.listener import build_listener, parse_listen


def monitor_listener(monitor: Monitor) -> web.Application:
    """The HTTP side of the monitor: web view and API, /metrics, /probe, /healthz and /readyz (ready after a sweep)."""
    return build_listener(
        monitor.current.settings,
        lambda: monitor.current.registry,
        ready=lambda: monitor.ready,
        # owners' re-checks share the sweeps' rate limits; `current` changes on reload, so look it up late
        network=lambda: monitor.current.network(),  # noqa: PLW0108
    )


@click.command()
@registry_option("Registry file or folder.")
@settings_options
@shard_option
@click.option("--listen", help="HOST:PORT for the web view, API, health and metrics (default: serve.listen).")
@click.option("--no-listen", is_flag=True, help="Do not open the HTTP listener.")
def run(
    registry_path: Path | None,
    config_file: Path | None,
    store: Path | None,
    shard: tuple[int, int] | None,
    listen: str | None,
    no_listen: bool,
) -> int:
    """Monitor continuously until SIGTERM/SIGINT; SIGHUP or a changed file reloads registry and rules."""
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from None
    configure_logging(logging.INFO)
    flags = {"registry": registry_path, "store": store, "serve": {"listen": listen} if listen else None}

    def load() -> Settings:
        return build_settings(config_file, **flags)

    monitor = Monitor(
        load,
        config_file=config_file,
        shard=shard,
        listener=None if no_listen else monitor_listener,
    )
    try:
        code = asyncio.run(monitor.run())
    except OSError as exc:  # the listen address is taken or not ours
        raise click.ClickException(
            f"cannot listen on {monitor.current.settings.serve.listen}: {exc.strerror or exc}"
        ) from None
    return code or EXIT_OK
