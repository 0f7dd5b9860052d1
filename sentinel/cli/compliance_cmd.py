"""`sentinel compliance status|frameworks`: per system × requirement verdicts and compliance ratios."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from sentinel.cli.common import EXIT_OK, build_app, console, format_option, settings_options
from sentinel.compliance import ComplianceVerdict, assess, load_frameworks, ratios
from sentinel.compliance.ratio import GroupBy

VERDICT_STYLE = {
    ComplianceVerdict.NON_COMPLIANT: "bold red",
    ComplianceVerdict.PARTIALLY_COMPLIANT: "yellow",
    ComplianceVerdict.NO_REMOTE_FINDING: "green",
    ComplianceVerdict.NOT_ASSESSED: "magenta",
    ComplianceVerdict.NOT_APPLICABLE: "dim",
}

frameworks_option = click.option(
    "--frameworks",
    "framework_paths",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Framework files or folders (default: the shipped rules/frameworks).",
)


@click.group()
def compliance() -> None:
    """MLPS 2.0 / government-website / NIST / CIS verdicts from remote evidence (never a claim of 符合)."""


@compliance.command()
@settings_options
@click.option("--registry", "registry_path", type=click.Path(path_type=Path), help="Registry file or folder.")
@click.option("--rules", "rule_paths", multiple=True, type=click.Path(path_type=Path), help="Rule files/folders.")
@frameworks_option
@click.option("--system", "systems", multiple=True, help="Only these system ids (repeatable).")
@click.option("--framework", "framework_ids", multiple=True, help="Only these frameworks, e.g. mlps2-l3.")
@click.option(
    "--group-by",
    type=click.Choice(["system", "department", "tier"]),
    default="system",
    show_default=True,
    help="How to aggregate compliance ratios.",
)
@click.option("--all", "show_all", is_flag=True, help="Table: also list not_applicable rows.")
@format_option()
def status(
    config_file: Path | None,
    store: Path | None,
    registry_path: Path | None,
    rule_paths: tuple[Path, ...],
    framework_paths: tuple[Path, ...],
    systems: tuple[str, ...],
    framework_ids: tuple[str, ...],
    group_by: GroupBy,
    show_all: bool,
    fmt: str,
) -> int:
    """Verdict per system and requirement with evidence, and compliance ratios.

    The ratio is no_remote_finding / applicable requirements; not_assessed counts against it."""
    app = build_app(
        config_file, existing_store=True, store=store, registry=registry_path, rules=list(rule_paths) or None
    )
    frameworks = load_frameworks(list(framework_paths) or None)
    if framework_ids:
        unknown = set(framework_ids) - {f.framework for f in frameworks}
        if unknown:
            raise click.BadParameter(f"unknown framework(s): {', '.join(sorted(unknown))}", param_hint="--framework")
        frameworks = [f for f in frameworks if f.framework in framework_ids]
    registry = app.registry
    if systems:
        unknown = set(systems) - {s.id for s in registry.systems}
        if unknown:
            raise click.BadParameter(f"not in the registry: {', '.join(sorted(unknown))}", param_hint="--system")
    now = datetime.now(UTC)
    verdicts = assess(app.store, registry, frameworks, now, rules=app.rules.rules, system_ids=systems or None)
    groups = ratios(verdicts, registry, group_by)
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "assessed_at": now.isoformat(),
                    "verdicts": [v.to_dict() for v in verdicts],
                    "ratios": [g.to_dict() for g in groups],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return EXIT_OK
    out = console()
    table = Table(header_style="bold", title="Compliance (remote evidence only; 符合 needs an on-site check)")
    for col in ("System", "Framework", "Control", "Verdict", "Evidence", "Observed"):
        table.add_column(col, overflow="fold")
    for v in verdicts:
        if v.verdict == ComplianceVerdict.NOT_APPLICABLE and not show_all:
            continue
        table.add_row(
            v.system_id,
            v.framework,
            f"{v.control} {v.title}",
            Text(f"{v.verdict.value} {v.verdict.label_zh}", style=VERDICT_STYLE[v.verdict]),
            "\n".join(v.evidence[:3]) + (f"\n(+{len(v.evidence) - 3} more)" if len(v.evidence) > 3 else ""),
            v.observed_at.strftime("%Y-%m-%d %H:%M") if v.observed_at else "-",
        )
    out.print(table)
    summary = Table(header_style="bold", title=f"Compliance ratio by {group_by}")
    for col in ("Group", "Framework", "Ratio", "Non", "Partial", "No finding", "Not assessed", "N/A"):
        summary.add_column(col)
    for g in groups:
        if not g.applicable:
            continue
        c = g.counts
        summary.add_row(
            g.group,
            g.framework,
            f"{g.ratio:.0%}" if g.ratio is not None else "-",
            *(
                str(c.get(k.value, 0))
                for k in (
                    ComplianceVerdict.NON_COMPLIANT,
                    ComplianceVerdict.PARTIALLY_COMPLIANT,
                    ComplianceVerdict.NO_REMOTE_FINDING,
                    ComplianceVerdict.NOT_ASSESSED,
                    ComplianceVerdict.NOT_APPLICABLE,
                )
            ),
        )
    out.print(summary)
    return EXIT_OK


@compliance.command("frameworks")
@frameworks_option
def frameworks_(framework_paths: tuple[Path, ...]) -> int:
    """List the loaded frameworks and their requirements."""
    table = Table(header_style="bold")
    for col in ("Framework", "Namespace", "Applies to", "Requirements", "Title"):
        table.add_column(col, overflow="fold")
    for fw in load_frameworks(list(framework_paths) or None):
        scope = fw.applies_to.model_dump(exclude_none=True)
        shown = json.dumps(scope, ensure_ascii=False) if scope else "all"
        table.add_row(fw.framework, fw.namespace, shown, str(len(fw.requirements)), fw.title)
    console().print(table)
    return EXIT_OK
