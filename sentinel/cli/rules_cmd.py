"""`sentinel rules list|lint`."""

from __future__ import annotations

from pathlib import Path

import click

from sentinel.cli.common import EXIT_OK, console
from sentinel.engine.loader import load_rules
from sentinel.engine.paths import shipped_rules_dir


@click.group()
def rules() -> None:
    """Inspect and check rule files."""


@rules.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def lint(paths: tuple[Path, ...]) -> int:
    """Validate rule files; every problem is printed as FILE:LINE: message."""
    loaded = load_rules(list(paths) or [shipped_rules_dir()])
    click.echo(f"{len(loaded)} rules OK")
    return EXIT_OK


@rules.command("list")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def list_(paths: tuple[Path, ...]) -> int:
    """List rules with severity, category, what they read and the controls they evidence."""
    from rich.table import Table

    table = Table(header_style="bold")
    for col in ("Rule", "Severity", "Category", "Reads", "Controls", "Title"):
        table.add_column(col, overflow="fold")
    for r in sorted(load_rules(list(paths) or [shipped_rules_dir()]), key=lambda r: r.id):
        table.add_row(r.id, r.severity.value, r.category, ",".join(r.observation), ", ".join(r.controls.mlps), r.title)
    console().print(table)
    return EXIT_OK
