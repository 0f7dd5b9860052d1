"""`sentinel rules list|lint|test`."""

from __future__ import annotations

from pathlib import Path

import click

from sentinel.cli.common import EXIT_FINDINGS, EXIT_OK, console
from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet
from sentinel.errors import InputError
from sentinel.paths import shipped_rules_dir
from sentinel.ruledev.fixtures import FixtureRunner, load_fixtures
from sentinel.ruledev.lint import lint as lint_rules

paths_argument = click.argument("paths", nargs=-1, type=click.Path(path_type=Path))


@click.group()
def rules() -> None:
    """Inspect, check and test rule files."""


@rules.command()
@paths_argument
@click.option("--require-zh", is_flag=True, help="A rule without Chinese title and remediation is an error.")
def lint(paths: tuple[Path, ...], require_zh: bool) -> int:
    """Validate rules, fixtures and their cross-references; every problem as FILE:LINE: message.

    Besides each file's schema: duplicate ids, control ids that no framework file (rules/frameworks/)
    defines, rules without a fixture, fixtures without a present and an absent case, and Chinese text
    (required for the shipped rules; a warning for others unless --require-zh)."""
    report = lint_rules(list(paths) or [shipped_rules_dir()], require_zh=True if require_zh else None)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report.problems:
        raise InputError(report.problems)
    click.echo(f"{len(report.rules)} rules and {len(report.fixtures)} fixture files OK")
    return EXIT_OK


@rules.command()
@paths_argument
@click.option("--rule", "rule_ids", multiple=True, help="Only the fixtures of these rules (repeatable).")
@click.option("-v", "--verbose", is_flag=True, help="List passing cases too.")
def test(paths: tuple[Path, ...], rule_ids: tuple[str, ...], verbose: bool) -> int:
    """Run every rule fixture (rules/tests/<rule_id>.yaml). Exit 1 if a case fails, 2 if a file is invalid."""
    roots = list(paths) or [shipped_rules_dir()]
    loaded_rules = load_rules(roots)
    fixtures, problems = load_fixtures(roots)
    if problems:
        raise InputError(problems)
    runner = FixtureRunner(loaded_rules, RuleSet(loaded_rules))
    passed = failed = errors = 0
    for fixture in fixtures:
        if rule_ids and fixture.fixture.rule not in rule_ids:
            continue
        for result in runner.run(fixture):
            where = f"{result.path}:{result.line}" if result.line else str(result.path)
            if result.ok:
                passed += 1
                if verbose:
                    click.echo(f"PASS  {result.rule_id}: {result.case}")
            else:
                kind = "ERROR" if result.error else "FAIL "
                errors += result.error
                failed += not result.error
                click.echo(f"{kind} {where}: {result.rule_id}: {result.case}: {result.message}")
    click.echo(f"{passed} passed, {failed} failed, {errors} could not run")
    return EXIT_FINDINGS if failed or errors else EXIT_OK


@rules.command("list")
@paths_argument
def list_(paths: tuple[Path, ...]) -> int:
    """List rules with severity, category, what they read and the controls they evidence."""
    from rich.table import Table

    table = Table(header_style="bold")
    for col in ("Rule", "Severity", "Category", "Reads", "Memory", "Controls", "Title"):
        table.add_column(col, overflow="fold")
    for r in sorted(load_rules(list(paths) or [shipped_rules_dir()]), key=lambda r: r.id):
        memory = ", ".join(
            k for k in ("change", "baseline", "window", "absence", "flapping") if getattr(r, k) is not None
        )
        if r.for_ > 1 or r.clear_after > 1:
            memory = ", ".join(x for x in (memory, f"for {r.for_}/clear {r.clear_after}") if x)
        table.add_row(
            r.id, r.severity.value, r.category, ",".join(r.observation), memory, ", ".join(r.controls.mlps), r.title
        )
    console().print(table)
    return EXIT_OK
