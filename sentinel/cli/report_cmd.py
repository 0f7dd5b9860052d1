"""`sentinel report compliance` (HTML, PDF, XLSX, CSV, JSON, OSCAL) and `sentinel report verify`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sentinel.app import Sentinel
from sentinel.cli.common import EXIT_FINDINGS, EXIT_OK, build_app, registry_option, settings_options
from sentinel.cli.compliance_cmd import estate_selection
from sentinel.cli.progress import ProgressReporter
from sentinel.compliance.assess import iter_assess, select_frameworks
from sentinel.compliance.frameworks import Framework, load_frameworks
from sentinel.registry.models import Registry
from sentinel.reports.build import DEFAULT_DETAIL_LIMIT, CoverInput, Scope, build_report
from sentinel.reports.manifest import verify_manifest, write_manifest
from sentinel.reports.model import ReportData
from sentinel.reports.oscal import catalog
from sentinel.reports.pdf import Chromium
from sentinel.reports.render import FORMATS, ReportError, split_path, write_report
from sentinel.reports.text import beijing
from sentinel.sinks.elasticsearch.estate import EstateSelection, EstateUnavailableError

if TYPE_CHECKING:
    from sentinel.store import SqliteStore

#: exit status when the shared cluster cannot be read (as `sentinel sinks ship`)
EXIT_UNREACHABLE = 3


@click.group()
def report() -> None:
    """Reports for auditors."""


def parse_local(text: str | None, option: str) -> datetime | None:
    """ISO date or date-time; without an offset it is Beijing time (an auditor's '2026-11-01' is local)."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"'{text}' is not an ISO date (YYYY-MM-DD or YYYY-MM-DDTHH:MM)", param_hint=option
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=beijing())


@report.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="html", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Report file; with --split department, the stem of one file per department (report-<dept>.pdf).",
)
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
    help="Framework ids to report on (default: MLPS at each system's own level, and gov-web where it applies).",
)
@click.option("--international", is_flag=True, help="Also judge against CIS v8 and NIST 800-53 (where they apply).")
@click.option(
    "--since", help="Start of the period (ISO date, Beijing time unless an offset is given; default: 7 days)."
)
@click.option("--until", help="End of the period (ISO date, Beijing time unless an offset is given; default now).")
@click.option("--org", "organisation", default="", help="The assessed organisation (被测单位), for the cover.")
@click.option("--assessor", default="", help="The organisation preparing the report (编制单位), for the cover.")
@click.option("--report-number", default="", help="Report number for the cover (default SEN-<date>-<scope digest>).")
@click.option("--split", type=click.Choice(["department"]), help="One report file per department.")
@click.option(
    "--estate",
    is_flag=True,
    help="Read every site's findings and observations from the shared Elasticsearch cluster (sinks.elasticsearch) "
    "instead of the local store; the registry is the city's, with every district's systems.",
)
@click.option("--site", "sites", multiple=True, help="With --estate: only the systems this site recorded (repeatable).")
@click.option(
    "--detail-limit",
    type=click.IntRange(0),
    default=DEFAULT_DETAIL_LIMIT,
    show_default=True,
    help="HTML/PDF list per-requirement records only for reports of at most this many systems.",
)
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
    international: bool,
    since: str | None,
    until: str | None,
    organisation: str,
    assessor: str,
    report_number: str,
    split: str | None,
    estate: bool,
    sites: tuple[str, ...],
    detail_limit: int,
) -> int:
    """Write the MLPS compliance report, with a SHA-256 manifest beside it."""
    if sites and not estate:
        raise click.BadParameter("sites are read from the shared cluster: add --estate", param_hint="--site")
    scope = Scope(
        tuple(department),
        tuple(tier),
        tuple(level),
        tuple(systems),
        parse_local(since, "--since"),
        parse_local(until, "--until"),
    )
    if scope.since and scope.until and scope.since >= scope.until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    app = build_app(config_file, existing_store=not estate, registry=registry_path, store=store)
    written: list[tuple[Path, ReportData, Path]] = []
    chosen: EstateSelection | None = None
    try:
        registry = app.registry
        fws = select_frameworks(load_frameworks(), frameworks, international)
        known_depts = {s.owner.department for s in registry.systems}
        unknown = [d for d in department if d not in known_depts] + [
            sid for sid in systems if registry.system(sid) is None
        ]
        if unknown:
            raise click.BadParameter(f"not in the registry: {', '.join(unknown)}", param_hint="--department/--system")
        selected = [s for s in registry.systems if scope.selects(s)]
        now = scope.until or datetime.now(UTC)
        source: SqliteStore | None = None  # the app's store, unless --estate
        if estate and selected:
            chosen = estate_selection(app.settings, registry, selected, sites, now)
            kept = set(chosen.system_ids)
            # the report covers the systems the chosen sites recorded: the registry narrowed to them
            narrowed = tuple(s for s in registry.systems if s.id in kept)
            registry = Registry(scope=registry.scope, systems=narrowed, sources=registry.sources)
            selected, source = [s for s in selected if s.id in kept], chosen.source.as_store()
        if not selected:
            raise click.BadParameter("no registered system matches the given filters", param_hint="--tier/--level")
        cover = CoverInput(organisation, assessor, report_number)
        parts: list[tuple[Scope, Path]] = [(scope, output)]
        if split == "department":
            names = sorted({s.owner.department for s in selected})
            parts = [(Scope(**{**scope.__dict__, "departments": (name,)}), split_path(output, name)) for name in names]
        browser = Chromium() if fmt == "pdf" else None
        try:
            with ProgressReporter("report", len(selected)) as progress:
                for part_scope, path in parts:
                    data = _one(app, fws, part_scope, now, lang, cover, detail_limit, progress, registry, source)
                    progress.stage(f"writing {path.name}", 1)
                    write_report(data, fmt, path, browser)
                    progress.advance()
                    progress.stage("report", len(selected))
                    manifest = write_manifest(data, path, fmt)
                    if fmt == "oscal":
                        cat = path.with_name(path.stem + ".catalog.json")
                        reqs = [(fw.framework, r.id, r.title, r.text) for fw in fws for r in fw.requirements]
                        cat.write_text(json.dumps(catalog(reqs), ensure_ascii=False, indent=1), encoding="utf-8")
                    written.append((path, data, manifest))
        finally:
            if browser is not None:
                browser.close()
    except ReportError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write: {exc.strerror or exc}") from None
    except EstateUnavailableError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_UNREACHABLE) from None
    finally:
        if chosen is not None:
            chosen.close()
        app.close()
    for path, data, manifest in written:
        counts = data.verdict_counts
        click.echo(
            f"wrote {path} ({len(data.systems)} systems, {len(data.records)} requirement records, "
            f"{counts['non_compliant']} non-compliant, {len(data.problems)} problems); manifest {manifest}"
        )
    untranslated = sorted({r for _, data, _ in written for r in data.untranslated_rules})
    if lang == "zh" and untranslated:
        click.echo(
            f"note: {len(untranslated)} rule(s) have no Chinese text (title_zh/remediation_zh); their English text "
            f"is shown: {', '.join(untranslated)}",
            err=True,
        )
    return EXIT_OK


def _one(
    app: Sentinel,
    fws: list[Framework],
    scope: Scope,
    now: datetime,
    lang: str,
    cover: CoverInput,
    detail_limit: int,
    progress: ProgressReporter,
    registry: Registry | None = None,
    source: SqliteStore | None = None,
) -> ReportData:
    """One report; `registry` and `source` default to the app's (--estate: see compliance_cmd.estate_selection)."""
    registry = app.registry if registry is None else registry
    store = app.store if source is None else source
    rules = app.rules.rules
    selected = [s.id for s in registry.systems if scope.selects(s)]
    verdicts = iter_assess(
        store, registry, fws, now, rules=rules, system_ids=selected, on_system=lambda _s: progress.advance()
    )
    info: dict[tuple[str, str], tuple[str, str]] = {
        (fw.framework, r.id): (r.title, r.text) for fw in fws for r in fw.requirements
    }
    by_id: dict[str, Any] = {r.id: r for r in rules}
    return build_report(
        registry,
        store,
        verdicts,
        scope,
        now,
        lang,
        requirement_info=lambda framework, control: info.get((framework, control), ("", "")),
        rules=by_id,
        cover=cover,
        frameworks=[(fw.framework, fw.title) for fw in fws],
        detail_limit=detail_limit,
        namespaces={fw.namespace for fw in fws},
    )


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
