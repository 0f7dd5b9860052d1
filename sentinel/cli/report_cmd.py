"""`sentinel report compliance` (HTML, PDF, XLSX, CSV, JSON, OSCAL) and `sentinel report verify`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from sentinel.cli.common import EXIT_FINDINGS, EXIT_OK, build_app, parse_when, registry_option, settings_options
from sentinel.compliance.assess import assess
from sentinel.compliance.frameworks import load_frameworks
from sentinel.reports.build import Scope, build_report
from sentinel.reports.manifest import verify_manifest, write_manifest
from sentinel.reports.oscal import catalog
from sentinel.reports.render import FORMATS, ReportError, write_report


@click.group()
def report() -> None:
    """Reports for auditors."""


@report.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@registry_option()
@settings_options
@click.option("--department", multiple=True, help="Only this department's systems (repeatable).")
@click.option("--tier", multiple=True, type=click.Choice(["city", "district", "street"]))
@click.option("--level", multiple=True, type=click.IntRange(1, 5), help="Only systems at this MLPS level.")
@click.option("--system", "systems", multiple=True, help="Only this system (repeatable).")
@click.option(
    "--framework",
    "frameworks",
    multiple=True,
    help="Framework ids to report on (default: those that apply to each system).",
)
@click.option("--since", help="Start of the period (ISO date): findings last seen before it are left out.")
@click.option("--until", help="End of the period or point in time (ISO date; default now).")
def compliance(
    fmt: str,
    output: Path,
    lang: str,
    registry_path: Path | None,
    config_file: Path | None,
    store: Path | None,
    department: tuple[str, ...],
    tier: tuple[str, ...],
    level: tuple[int, ...],
    systems: tuple[str, ...],
    frameworks: tuple[str, ...],
    since: str | None,
    until: str | None,
) -> int:
    """Write the MLPS compliance report, with a SHA-256 manifest beside it."""
    app = build_app(config_file, existing_store=True, registry=registry_path, store=store)
    try:
        registry = app.registry
        scope = Scope(
            tuple(department), tuple(tier), tuple(level), tuple(systems), parse_when(since), parse_when(until)
        )
        now = scope.until or datetime.now(UTC)
        fws = [fw for fw in load_frameworks() if not frameworks or fw.framework in frameworks]
        if frameworks and not fws:
            raise click.BadParameter(f"no framework named {', '.join(frameworks)}", param_hint="--framework")
        known_depts = {s.owner.department for s in registry.systems}
        unknown = [d for d in department if d not in known_depts] + [
            sid for sid in systems if registry.system(sid) is None
        ]
        if unknown:
            raise click.BadParameter(f"not in the registry: {', '.join(unknown)}", param_hint="--department/--system")
        selected = [s.id for s in registry.systems if scope.selects(s)]
        verdicts = assess(app.store, registry, fws, now, rules=app.rules.rules, system_ids=selected)
        applies = {(fw.framework, s.id) for fw in fws for s in registry.systems if fw.applies_to.matches(s)}
        verdicts = [v for v in verdicts if (v.framework, v.system_id) in applies]
        info = {(fw.framework, r.id): (r.title, r.text) for fw in fws for r in fw.requirements}
        data = build_report(
            registry,
            app.store,
            verdicts,
            scope,
            now,
            lang,
            requirement_info=lambda framework, control: info.get((framework, control), ("", "")),
        )
        try:
            write_report(data, fmt, output)
            manifest = write_manifest(data, output, fmt)
            if fmt == "oscal":
                import json

                cat = output.with_name(output.stem + ".catalog.json")
                reqs = [(fw.framework, r.id, r.title, r.text) for fw in fws for r in fw.requirements]
                cat.write_text(json.dumps(catalog(reqs), ensure_ascii=False, indent=2), encoding="utf-8")
        except ReportError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"{output}: cannot write: {exc.strerror or exc}") from None
    finally:
        app.close()
    counts = data.verdict_counts
    click.echo(
        f"wrote {output} ({len(data.systems)} systems, {len(data.records)} requirement records, "
        f"{counts['non_compliant']} non-compliant, {len(data.problems)} problems); manifest {manifest}"
    )
    return EXIT_OK


@report.command()
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify(manifest: Path) -> int:
    """Check that a report file still matches its manifest."""
    problems = verify_manifest(manifest)
    for p in problems:
        click.echo(p, err=True)
    if not problems:
        click.echo(f"{manifest}: the report matches its manifest")
    return EXIT_FINDINGS if problems else EXIT_OK
