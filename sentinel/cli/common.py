"""Shared CLI plumbing: settings options on every command, output formats, error → exit code.

The composition root, the settings and rich are imported where they are used: every command imports this
module, and `sentinel pcap analyze` starts its analysis before it needs any of them.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from sentinel.errors import InputError, Problem
from sentinel.models import Finding, Severity

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from sentinel.app import Sentinel
    from sentinel.config.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2

SEVERITY_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def settings_options(func: F) -> F:
    """--config and --store on every command (settings: file < SENTINEL_* env < flags)."""
    func = click.option(
        "--store",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Embedded store file (default: sentinel.db, or 'store:' in the config).",
    )(func)
    func = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="SENTINEL_CONFIG",
        help="Settings file (sentinel.yaml).",
    )(func)
    return func


def registry_option(help_text: str = "Registry file or folder.") -> Callable[[F], F]:
    """--registry PATH (or SENTINEL_REGISTRY), the same on every command that reads the registry."""
    return click.option(
        "--registry", "registry_path", type=click.Path(path_type=Path), envvar="SENTINEL_REGISTRY", help=help_text
    )


def build_settings(config_file: Path | None, **flags: Any) -> Settings:
    from sentinel.config.settings import load_settings

    if config_file is not None and not config_file.exists():
        raise click.BadParameter(f"{config_file}: no such file", param_hint="--config")
    return load_settings(config_file, flags)


def build_app(config_file: Path | None, *, existing_store: bool = False, **flags: Any) -> Sentinel:
    """The composition root for one command (it opens the store only when first used). Commands that read
    what earlier runs recorded pass `existing_store=True`."""
    from sentinel.app import Sentinel

    app = Sentinel(build_settings(config_file, **flags))
    if existing_store:
        require_store(app.settings)
    return app


def require_store(settings: Settings) -> None:
    """A missing store is a usage error for a reading command, not an empty store created on the spot."""
    if not Path(settings.store).exists():
        raise InputError(
            [
                Problem(
                    str(settings.store),
                    None,
                    "no such store: nothing has been recorded there (run `sentinel scan` or `sentinel run` first,"
                    " or name the store with --store or 'store:' in the config)",
                )
            ]
        )


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal:  # piped or captured: don't squeeze tables into 80 columns
        out = Console(stderr=stderr, highlight=False, soft_wrap=False, width=160)
    return out


def age(then: datetime, now: datetime | None = None) -> str:
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def findings_table(findings: Sequence[Finding], title: str | None = None) -> Table:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False, header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("Severity", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("System", overflow="fold")
    table.add_column("Finding", overflow="fold", min_width=24, ratio=3)
    table.add_column("Target", overflow="fold", ratio=2)
    table.add_column("Seen", justify="right", no_wrap=True)
    table.add_column("Since", justify="right", no_wrap=True)
    now = datetime.now(UTC)
    for f in findings:
        status = f.status.value + (" (regression)" if f.regression else "")
        table.add_row(
            f.id[:12],
            Text(f.severity.value, style=SEVERITY_STYLE[f.severity]),
            status,
            f.system_id,
            f.title,
            f.target,
            str(f.occurrences),
            age(f.first_seen, now),
        )
    return table


CSV_COLUMNS = (
    "id",
    "rule_id",
    "title",
    "severity",
    "category",
    "system_id",
    "target",
    "site",
    "vantage",
    "status",
    "first_seen",
    "last_seen",
    "occurrences",
    "controls",
    "remediation",
    "evidence",
)


def render_findings(findings: Sequence[Finding], fmt: str, title: str | None = None) -> None:
    if fmt == "json":
        click.echo(json.dumps([f.to_dict() for f in findings], ensure_ascii=False, indent=2))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for f in findings:
            row = f.to_dict()
            row["controls"] = ";".join(f.controls)
            row["evidence"] = json.dumps(f.evidence, ensure_ascii=False)
            writer.writerow(row)
        sys.stdout.write(buf.getvalue())
    else:
        out = console()
        if findings:
            out.print(findings_table(findings, title))
        else:
            out.print("[green]No findings.[/green]")


def format_option(choices: Iterable[str] = ("table", "json")) -> Callable[[F], F]:
    return click.option(
        "--format", "fmt", type=click.Choice(list(choices)), default="table", show_default=True, help="Output format."
    )


def shard_option(func: F) -> F:
    """--shard i/n: only the systems this instance owns (rendezvous hashing over system ids)."""
    return click.option(
        "--shard",
        callback=_check_shard,
        envvar="SENTINEL_SHARD",
        help="Own only shard I of N of the registry, e.g. 2/3.",
    )(func)


def _check_shard(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    from sentinel.registry.sharding import parse_shard

    if value is None:
        return None
    try:
        return parse_shard(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def apply_shard(app: Sentinel, shard: tuple[int, int] | None) -> Sentinel:
    """The same application restricted to the systems of one shard."""
    from sentinel.app import Sentinel
    from sentinel.registry.sharding import shard_registry

    if shard is None:
        return app
    return Sentinel(app.settings, registry=shard_registry(app.registry, *shard))


def parse_when(text: str | None) -> datetime | None:
    """ISO date or date-time; a bare date means midnight UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"'{text}' is not an ISO date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
