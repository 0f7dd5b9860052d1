"""`sentinel compliance status|frameworks`: per system × requirement verdicts and compliance ratios."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from sentinel.cli.common import EXIT_OK, build_app, console, settings_options
from sentinel.cli.progress import ProgressReporter
from sentinel.compliance import (
    ComplianceVerdict,
    ControlVerdict,
    Ratio,
    iter_assess,
    load_frameworks,
    natural_key,
    select_frameworks,
)
from sentinel.compliance.assess import DEFAULT_MAX_AGE
from sentinel.compliance.ratio import GroupBy
from sentinel.config.settings import Settings
from sentinel.registry.models import Registry, System
from sentinel.sinks.elasticsearch.estate import EstateSelection, EstateUnavailableError, open_estate

VERDICT_STYLE = {
    ComplianceVerdict.NON_COMPLIANT: "bold red",
    ComplianceVerdict.PARTIALLY_COMPLIANT: "yellow",
    ComplianceVerdict.NO_REMOTE_FINDING: "green",
    ComplianceVerdict.NOT_ASSESSED: "magenta",
    ComplianceVerdict.NOT_APPLICABLE: "dim",
}

#: exit status when the shared cluster cannot be read (as `sentinel sinks ship`)
EXIT_UNREACHABLE = 3

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


VERDICT_ORDER = (
    ComplianceVerdict.NON_COMPLIANT,
    ComplianceVerdict.PARTIALLY_COMPLIANT,
    ComplianceVerdict.NO_REMOTE_FINDING,
    ComplianceVerdict.NOT_ASSESSED,
    ComplianceVerdict.NOT_APPLICABLE,
)
#: Rows that say "could not judge" or "does not apply": counted in the details table, listed only on request.
QUIET = (ComplianceVerdict.NOT_ASSESSED, ComplianceVerdict.NOT_APPLICABLE)
#: Up to this many selected systems the summary is per system; beyond it, per department (stays a screenful).
AUTO_SYSTEM_GROUPING = 20


@compliance.command()
@settings_options
@click.option("--registry", "registry_path", type=click.Path(path_type=Path), help="Registry file or folder.")
@click.option("--rules", "rule_paths", multiple=True, type=click.Path(path_type=Path), help="Rule files/folders.")
@frameworks_option
@click.option("--system", "systems", multiple=True, help="Only these system ids (repeatable); shows details.")
@click.option("--department", "departments", multiple=True, help="Only this department (repeatable); shows details.")
@click.option(
    "--tier", "tiers", multiple=True, type=click.Choice(["city", "district", "street"]), help="Only this tier."
)
@click.option(
    "--framework",
    "framework_ids",
    multiple=True,
    help="Only these frameworks, e.g. mlps2-l3 (default: MLPS at each system's level, and gov-web where it applies).",
)
@click.option("--international", is_flag=True, help="Also judge against CIS v8 and NIST 800-53.")
@click.option(
    "--verdict",
    "verdict_filter",
    multiple=True,
    type=click.Choice([v.value for v in ComplianceVerdict]),
    help="Details: only rows with this verdict (repeatable).",
)
@click.option("--control", "controls", multiple=True, help="Details: only this requirement id, e.g. '8.1.4.4 b)'.")
@click.option(
    "--group-by",
    type=click.Choice(["system", "department", "tier"]),
    default=None,
    help=f"How to aggregate the summary (default: system up to {AUTO_SYSTEM_GROUPING} systems, else department).",
)
@click.option("--details", is_flag=True, help="Also list verdict rows (implied by --system/--department/--tier/...).")
@click.option(
    "--estate",
    is_flag=True,
    help="Read every site's findings and observations from the shared Elasticsearch cluster (sinks.elasticsearch) "
    "instead of the local store; the registry is the city's, with every district's systems.",
)
@click.option(
    "--site", "sites", multiple=True, help="With --estate: only this site's systems and evidence (repeatable)."
)
@click.option("--all", "show_all", is_flag=True, help="Details: also list not_assessed and not_applicable rows.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "jsonl"]),
    default="table",
    show_default=True,
    help="json: one document written record by record (one verdict per line); jsonl: one JSON object per line.",
)
def status(
    config_file: Path | None,
    store: Path | None,
    registry_path: Path | None,
    rule_paths: tuple[Path, ...],
    framework_paths: tuple[Path, ...],
    systems: tuple[str, ...],
    departments: tuple[str, ...],
    tiers: tuple[str, ...],
    framework_ids: tuple[str, ...],
    international: bool,
    verdict_filter: tuple[str, ...],
    controls: tuple[str, ...],
    group_by: GroupBy | None,
    details: bool,
    estate: bool,
    sites: tuple[str, ...],
    show_all: bool,
    fmt: str,
) -> int:
    """Summary of verdicts (framework × group × verdict counts); details and JSON with filters.

    The ratio is no_remote_finding / applicable requirements; not_assessed counts against it."""
    if sites and not estate:
        raise click.BadParameter("sites are read from the shared cluster: add --estate", param_hint="--site")
    app = build_app(
        config_file, existing_store=not estate, store=store, registry=registry_path, rules=list(rule_paths) or None
    )
    chosen: EstateSelection | None = None
    try:
        frameworks = select_frameworks(load_frameworks(list(framework_paths) or None), framework_ids, international)
        registry = app.registry
        unknown = [s for s in systems if registry.system(s) is None]
        if unknown:
            raise click.BadParameter(f"not in the registry: {', '.join(sorted(unknown))}", param_hint="--system")
        known_depts = {s.owner.department for s in registry.systems}
        unknown = [d for d in departments if d not in known_depts]
        if unknown:
            raise click.BadParameter(f"no such department: {', '.join(unknown)}", param_hint="--department")
        known_controls = {r.id for fw in frameworks for r in fw.requirements}
        unknown = [c for c in controls if c not in known_controls]
        if unknown:
            raise click.BadParameter(f"no such requirement in the selected frameworks: {', '.join(unknown)}")
        selected = [
            s
            for s in registry.systems
            if (not systems or s.id in systems)
            and (not departments or s.owner.department in departments)
            and (not tiers or s.tier.value in tiers)
        ]
        now = datetime.now(UTC)
        if estate:
            chosen = estate_selection(app.settings, registry, selected, sites, now)
            selected = [s for s in selected if s.id in set(chosen.system_ids)]
        group: GroupBy = group_by or ("system" if len(selected) <= AUTO_SYSTEM_GROUPING else "department")
        with ProgressReporter("compliance status", len(selected)) as progress:
            stream = iter_assess(
                app.store if chosen is None else chosen.source.as_store(),
                registry,
                frameworks,
                now,
                rules=app.rules.rules,
                system_ids=[s.id for s in selected],
                on_system=lambda _s: progress.advance(),
            )
            wanted = _row_filter(verdict_filter, controls)
            if fmt in ("json", "jsonl"):
                counters = _write_json(stream, registry, group, wanted, now, fmt == "jsonl")
                return EXIT_OK
            listing = details or bool(systems or departments or tiers or verdict_filter or controls)
            counters, table, hidden = _collect(
                stream, registry, group, wanted, listing, show_all or bool(verdict_filter)
            )
    except EstateUnavailableError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_UNREACHABLE) from None
    finally:
        if chosen is not None:
            chosen.close()
        app.close()
    out = console()
    if table is not None:
        out.print(table)
        if hidden:
            shown = ", ".join(f"{n} {v}" for v, n in hidden.items())
            out.print(f"not listed: {shown} (--all or --verdict to list them)")
    out.print(_summary(counters, group))
    return EXIT_OK


def estate_selection(
    settings: Settings, registry: Registry, selected: list[System], sites: tuple[str, ...], now: datetime
) -> EstateSelection:
    """The cluster's findings and observations for the selected systems (with --site: those the sites recorded);
    a note on stderr for systems the cluster has and the registry lacks."""
    chosen = open_estate(
        settings,
        [s.id for s in registry.systems],
        [s.id for s in selected],
        sites,
        now - DEFAULT_MAX_AGE,
        settings.findings,
    )
    if chosen.unregistered:
        shown = ", ".join(chosen.unregistered[:10]) + (" ..." if len(chosen.unregistered) > 10 else "")
        click.echo(
            f"note: {len(chosen.unregistered)} system(s) in the cluster are not in this registry, so they are not "
            f"assessed (the city's registry should hold every district's systems): {shown}",
            err=True,
        )
    return chosen


def _row_filter(verdicts: tuple[str, ...], controls: tuple[str, ...]) -> Callable[[ControlVerdict], bool]:
    def keep(v: ControlVerdict) -> bool:
        return (not verdicts or v.verdict.value in verdicts) and (not controls or v.control in controls)

    return keep


Counters = dict[tuple[str, str], Counter[str]]


def _group_of(registry: Registry, v: ControlVerdict, group: GroupBy) -> str:
    system = registry.system(v.system_id)
    if system is None:
        return v.system_id
    return {"system": system.id, "department": system.owner.department, "tier": system.tier.value}[group]


def _write_json(
    stream: Iterable[ControlVerdict],
    registry: Registry,
    group: GroupBy,
    wanted: Callable[[ControlVerdict], bool],
    now: datetime,
    lines: bool,
) -> Counters:
    """Write each verdict as it comes (one per line), then the ratios: memory stays flat for an estate."""
    counters: Counters = {}
    write = sys.stdout.write
    if not lines:
        write(json.dumps({"assessed_at": now.isoformat()})[:-1] + ', "verdicts": [\n')
    first = True
    for v in stream:
        counters.setdefault((_group_of(registry, v, group), v.framework), Counter())[v.verdict.value] += 1
        if not wanted(v):
            continue
        if lines:
            write(json.dumps({"type": "verdict", **v.to_dict()}, ensure_ascii=False) + "\n")
        else:
            write(("" if first else ",\n") + json.dumps(v.to_dict(), ensure_ascii=False))
        first = False
    groups = [Ratio(group, g, fw, dict(c)) for (g, fw), c in sorted(counters.items())]
    if lines:
        for r in groups:
            write(json.dumps({"type": "ratio", **r.to_dict()}, ensure_ascii=False) + "\n")
    else:
        write('\n],\n"ratios": [\n' + ",\n".join(json.dumps(r.to_dict(), ensure_ascii=False) for r in groups))
        write("\n]}\n")
    sys.stdout.flush()
    return counters


def _collect(
    stream: Iterable[ControlVerdict],
    registry: Registry,
    group: GroupBy,
    wanted: Callable[[ControlVerdict], bool],
    listing: bool,
    list_quiet: bool,
) -> tuple[Counters, Table | None, Counter[str]]:
    counters: Counters = {}
    hidden: Counter[str] = Counter()
    table: Table | None = None
    if listing:
        table = Table(header_style="bold", title="Compliance (remote evidence only; 符合 needs an on-site check)")
        for col in ("System", "Framework", "Control", "Verdict", "Evidence", "Observed"):
            table.add_column(col, overflow="fold")
    for v in stream:
        counters.setdefault((_group_of(registry, v, group), v.framework), Counter())[v.verdict.value] += 1
        if table is None or not wanted(v):
            continue
        if v.verdict in QUIET and not list_quiet:
            hidden[v.verdict.value] += 1
            continue
        table.add_row(
            v.system_id,
            v.framework,
            f"{v.control} {v.title}",
            Text(f"{v.verdict.value} {v.verdict.label_zh}", style=VERDICT_STYLE[v.verdict]),
            "\n".join(v.evidence[:3]) + (f"\n(+{len(v.evidence) - 3} more)" if len(v.evidence) > 3 else ""),
            v.observed_at.strftime("%Y-%m-%d %H:%M") if v.observed_at else "-",
        )
    return counters, table, hidden


def _summary(counters: Counters, group: GroupBy) -> Table:
    summary = Table(header_style="bold", title=f"Compliance ratio by {group}")
    summary.add_column("Framework")
    summary.add_column(group.capitalize())
    for v in VERDICT_ORDER:
        summary.add_column(f"{v.value} {v.label_zh}", justify="right")
    summary.add_column("Ratio", justify="right")
    ordered = sorted(counters.items(), key=lambda kv: (natural_key(kv[0][1]), kv[0][0]))
    for (name, framework), c in ordered:
        r = Ratio(group, name, framework, dict(c))
        summary.add_row(
            framework,
            name,
            *(str(c.get(v.value, 0)) for v in VERDICT_ORDER),
            f"{r.ratio:.0%}" if r.ratio is not None else "-",
        )
    return summary


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
