"""`sentinel registry validate|import|list`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from sentinel.cli.common import EXIT_OK, console, format_option, shard_option
from sentinel.registry.csv_import import import_csv
from sentinel.registry.loader import load_registry
from sentinel.registry.sharding import shard_registry


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
    click.echo(
        f"{path}: OK: {len(reg.systems)} systems ({', '.join(f'{n} {t}' for t, n in sorted(tiers.items()))}), "
        f"{endpoints} endpoints, scope {len(reg.scope.allow)} entries"
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
def import_(csv_file: Path, output: Path | None, scope: tuple[str, ...]) -> int:
    """Turn an owners' spreadsheet (CSV) into registry YAML."""
    text = import_csv(csv_file, list(scope) or None)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
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
