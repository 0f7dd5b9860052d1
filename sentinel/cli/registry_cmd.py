"""`sentinel registry validate|import|list`."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import click

from sentinel.cli.common import EXIT_OK, console, format_option, shard_option
from sentinel.errors import InputError, Problem
from sentinel.registry.csv_import import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ROWS,
    ImportLimits,
    ProgressCallback,
    import_csv_to,
)
from sentinel.registry.loader import load_registry
from sentinel.registry.sharding import shard_registry
from sentinel.yamlio import MAX_BYTES as YAML_MAX_BYTES

#: seconds between two progress lines when stderr is not a terminal (logs, CI)
PROGRESS_INTERVAL = 10.0


class LineProgress:
    """Progress for logs: one line at most every `interval` seconds (and none for a quick import)."""

    def __init__(
        self,
        total: int,
        stream: IO[str],
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.stream, self.interval, self.clock = total, stream, interval, clock
        self.started = self.last = clock()

    def __call__(self, done: int, rows: int) -> None:
        now = self.clock()
        if now - self.last < self.interval:
            return
        self.last = now
        rate = rows / max(now - self.started, 1e-9)
        share = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        self.stream.write(f"import: {rows:,} rows, {done:,} of {self.total:,} bytes{share}, {rate:,.0f} rows/s\n")
        self.stream.flush()


@contextmanager
def import_progress(total: int) -> Iterator[ProgressCallback]:
    """A rich progress bar on a terminal, timed lines otherwise."""
    if not sys.stderr.isatty():
        yield LineProgress(total, sys.stderr, PROGRESS_INTERVAL)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("importing"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("import", total=total, rows=0)
        yield lambda done, rows: bar.update(task, completed=done, rows=rows)


@click.group()
def registry() -> None:
    """Check and build the registry of monitored systems."""


@registry.command()
@click.argument("path", type=click.Path(path_type=Path))
def validate(path: Path) -> int:
    """Validate a registry file or folder; every problem is printed as FILE:LINE: message."""
    reg = load_registry(path)
    tiers = Counter(s.tier.value for s in reg.systems)
    endpoints = sum(len(s.endpoints) for s in reg.systems)
    names = {e.hostname for s in reg.systems for e in s.endpoints}
    click.echo(
        f"{path}: OK: {len(reg.systems)} systems ({', '.join(f'{n} {t}' for t, n in sorted(tiers.items()))}), "
        f"{endpoints} endpoints, scope {len(reg.scope.allow)} entries"
    )
    # the size says what "in scope" means: a typo such as /8 for /24 shows up here as 16,777,216
    click.echo(
        f"scope: {reg.scope.describe_size()}, {len(names)} registered host names and addresses"
        + (" (allow_wide: true)" if reg.scope.allow_wide else "")
    )
    return EXIT_OK


@registry.command("import")
@click.argument("csv_file", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write YAML here (default: stdout)."
)
@click.option(
    "--scope",
    "scope",
    multiple=True,
    help="Scope entry (CIDR or DNS suffix); repeatable. Default: exactly the listed hosts.",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_BYTES,
    show_default=True,
    help="Refuse a CSV file larger than this.",
)
@click.option(
    "--max-rows",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_ROWS,
    show_default=True,
    help="Refuse a CSV with more data rows than this.",
)
def import_(csv_file: Path, output: Path | None, scope: tuple[str, ...], max_bytes: int, max_rows: int) -> int:
    """Turn an owners' spreadsheet (CSV) into registry YAML (streamed; progress on stderr for long imports)."""
    limits = ImportLimits(max_bytes=max_bytes, max_rows=max_rows)
    try:
        total = csv_file.stat().st_size
    except OSError:
        total = 0  # import_csv_to reports the unreadable file
    if output is None:
        with import_progress(total) as progress:
            result = import_csv_to(csv_file, sys.stdout, list(scope) or None, limits, progress)
    else:
        partial = output.with_name(output.name + ".partial")  # a refused import leaves the old output intact
        try:
            with partial.open("w", encoding="utf-8") as out, import_progress(total) as progress:
                result = import_csv_to(csv_file, out, list(scope) or None, limits, progress)
            partial.replace(output)
        except OSError as exc:
            raise InputError([Problem(str(output), None, f"cannot write: {exc.strerror or exc}")]) from None
        finally:
            partial.unlink(missing_ok=True)
        click.echo(f"wrote {output}: {result.systems} systems", err=True)
    if result.output_bytes > YAML_MAX_BYTES:
        click.echo(
            f"warning: the registry is {result.output_bytes:,} bytes; the loader reads files of at most "
            f"{YAML_MAX_BYTES:,} bytes, so split it into a folder of smaller files",
            err=True,
        )
    if not scope:
        click.echo("note: scope inferred as exactly the listed hosts; widen it with --scope CIDR", err=True)
    return EXIT_OK


@registry.command("list")
@click.argument("path", type=click.Path(path_type=Path))
@format_option(("table", "json", "ids"))
@shard_option
def list_(path: Path, fmt: str, shard: tuple[int, int] | None) -> int:
    """List the registered systems (with --shard, only those that shard owns)."""
    reg = load_registry(path)
    if shard is not None:
        reg = shard_registry(reg, *shard)
    if fmt == "ids":
        click.echo("\n".join(s.id for s in reg.systems))
        return EXIT_OK
    if fmt == "json":
        click.echo(json.dumps([s.model_dump(mode="json") for s in reg.systems], ensure_ascii=False, indent=2))
        return EXIT_OK
    from rich.table import Table

    table = Table(header_style="bold")
    for col in ("ID", "Name", "Tier", "MLPS", "CII", "Department", "Endpoints"):
        table.add_column(col, overflow="fold")
    for s in reg.systems:
        eps = ", ".join(e.url or f"{e.host} {','.join(map(str, e.ports))}".strip() for e in s.endpoints)
        table.add_row(s.id, s.name, s.tier.value, str(s.mlps_level), "yes" if s.cii else "", s.owner.department, eps)
    console().print(table)
    return EXIT_OK
