"""`sentinel scan`: one sweep of every collector over the registry; findings updated and printed."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from sentinel.app import Sentinel
from sentinel.cli.common import (
    EXIT_FINDINGS,
    EXIT_OK,
    apply_shard,
    build_app,
    console,
    format_option,
    registry_option,
    render_findings,
    settings_options,
    shard_option,
)
from sentinel.cli.progress import ProgressReporter
from sentinel.collectors.runner import SweepProgress
from sentinel.models import Finding, FindingStatus, Severity
from sentinel.sinks import SweepOutcome


class ScanProgress(ProgressReporter):
    """The shared reporter, fed by the runner as jobs finish, with the findings seen so far in the bar and line."""

    findings = 0

    def line(self, now: float) -> str:
        return f"{super().line(now)}, {self.findings} findings so far"

    def update(self, state: SweepProgress) -> None:
        self.findings = state.findings
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, description=f"{self.label} ({state.findings} findings)")
        if state.done > self.done:
            self.advance(state.done - self.done)


@click.command()
@registry_option("Registry file or folder.")
@click.option(
    "--rules",
    "rule_paths",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Rules file or folder (repeatable; default: the shipped rules).",
)
@settings_options
@format_option()
@click.option(
    "--fail-on",
    type=click.Choice([s.value for s in Severity]),
    help="Exit 1 when an open finding is at or above this severity.",
)
@click.option("--dry-run", is_flag=True, help="Print every probe that would be sent, and send nothing.")
@shard_option
def scan(
    registry_path: Path | None,
    rule_paths: tuple[Path, ...],
    config_file: Path | None,
    store: Path | None,
    fmt: str,
    fail_on: str | None,
    dry_run: bool,
    shard: tuple[int, int] | None,
) -> int:
    """Run one sweep of all collectors over the registry and update the findings."""
    app = apply_shard(
        build_app(config_file, registry=registry_path, store=store, rules=list(rule_paths) or None), shard
    )
    try:
        if dry_run:
            return _dry_run(app)
        app.validate()
        total = len(app.plan())
        progress = ScanProgress("scan", total)
        with progress:
            outcome = app.scan(progress=progress.update)
        shown = _sweep_findings(app, outcome)
        if fmt == "table":
            _summary(app, outcome)
        if fmt == "json":
            write_json(shown)
        else:
            render_findings(shown, fmt, title="Findings after this sweep")
        if fail_on is not None:
            threshold = Severity(fail_on)
            if any(f.status.is_active and f.severity.at_least(threshold) for f in shown):
                return EXIT_FINDINGS
        return EXIT_OK
    finally:
        app.close()


def write_json(findings: Sequence[Finding]) -> None:
    """The findings as the JSON list `render_findings` prints (the same bytes), written one finding at a time:
    a sweep of a large estate no longer builds its whole output in memory."""
    if not findings:
        click.echo("[]")
        return
    click.echo("[")
    for i, finding in enumerate(findings):
        text = json.dumps(finding.to_dict(), ensure_ascii=False, indent=2)
        click.echo(("" if i == 0 else ",\n") + "  " + text.replace("\n", "\n  "), nl=False)
    click.echo("\n]")


def _sweep_findings(app: Sentinel, outcome: SweepOutcome) -> list[Finding]:
    """Active findings of the registry's systems, plus those this sweep resolved."""
    ids = [s.id for s in app.registry.systems]
    active = app.store.list_findings(
        statuses=[FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED, FindingStatus.SUPPRESSED], system_ids=ids
    )
    return active + outcome.changes.resolved


def _summary(app: Sentinel, outcome: SweepOutcome) -> None:
    obs = outcome.observations
    errors = sum(1 for o in obs if o.status.value == "error")
    ch = outcome.changes
    took = (outcome.finished_at - outcome.started_at).total_seconds()
    methods = ", ".join(sorted({str(o.data["method"]) for o in obs if "method" in o.data})) or "no port"
    console().print(
        f"Sweep {outcome.sweep_id}: {len(app.registry.systems)} systems, {len(obs)} observations "
        f"({errors} could not observe) in {took:.1f} s ({methods} scan); "
        f"[bold]{len(ch.new)} new[/bold], {len(ch.updated)} still open, {len(ch.reopened)} reopened, "
        f"{len(ch.resolved)} resolved."
    )


def _dry_run(app: Sentinel) -> int:
    app.validate()
    with ProgressReporter("planning", len(app.registry.systems)) as progress:
        planned = app.plan(on_system=lambda _: progress.advance())
    total = 0
    out = console()
    out.print(f"Dry run: {len(planned)} jobs; nothing will be sent.")
    for p in sorted(planned, key=lambda p: (p.job.system_id, p.probe.name, p.job.target)):
        budget = p.probe.budget(p.job)
        total += budget
        out.print(f"  {p.job.describe()}  (at most {budget} probe{'s' if budget != 1 else ''})", markup=False)
    s = app.settings.collectors
    out.print(
        f"Budget: at most {total} probes (connections or packets); "
        f"{s.per_target_rate:g}/s per target (burst {s.per_target_burst:g}), "
        f"{s.global_rate:g}/s overall, {s.per_target_concurrency} at a time per target, "
        f"connect timeout {s.connect_timeout:g} s."
    )
    return EXIT_OK
