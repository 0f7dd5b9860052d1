"""`rules lint` refuses an observation kind that no probe or traffic detector produces, at FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.cli.main import main
from sentinel.collectors import BUILTIN_PROBES
from sentinel.paths import shipped_rules_dir
from sentinel.ruledev.kinds import literal_kinds, observation_kinds
from sentinel.ruledev.lint import lint

RULE = """\
id: {rid}
title: A rule on a kind
severity: low
category: configuration
observation: {observation}
condition: {{field: state, op: eq, value: open}}
remediation: Nothing to do.
"""


def _rule(folder: Path, rid: str, observation: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rid}.yaml"
    path.write_text(RULE.format(rid=rid, observation=observation), encoding="utf-8")
    return path


def test_unknown_kind_is_a_problem_at_its_line(tmp_path: Path) -> None:
    one = _rule(tmp_path / "rules", "on_nothing", "no_such_kind")
    two = _rule(tmp_path / "rules", "on_two", "\n  - port\n  - htpp")
    problems = [p for p in lint([tmp_path / "rules"]).problems if p.message.startswith("observation:")]
    assert [(p.file, p.line) for p in problems] == [(str(one), 5), (str(two), 7)]
    assert "'no_such_kind'" in problems[0].message
    assert "'htpp'" in problems[1].message and "did you mean 'http'?" in problems[1].message


def test_the_cli_exits_2_naming_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _rule(tmp_path / "rules", "on_nothing", "no_such_kind")
    assert main(["rules", "lint", str(tmp_path / "rules")]) == 2
    assert (
        f"{path}:5: observation: no probe or traffic detector produces kind 'no_such_kind'" in capsys.readouterr().err
    )


def test_known_kinds_cover_every_producer_and_every_shipped_rule() -> None:
    kinds = observation_kinds()
    assert {p.kind for p in BUILTIN_PROBES.values()} <= kinds
    assert {"port", "host", "traffic.capture", "traffic.portscan", "traffic.threat_intel"} <= kinds
    assert not [p for p in lint([shipped_rules_dir()]).problems if p.message.startswith("observation:")]


def test_literal_kinds_reads_keywords_positions_and_constants() -> None:
    source = (
        'KIND = "traffic.x"\n'
        "def f(ctx, job):\n"
        '    Observation(kind="port", system_id="s")\n'
        '    ctx.observation("traffic.y", "s", "t", {})\n'
        "    Observation(kind=KIND)\n"
        '    Attempt(error_kind="timeout")\n'
        "    service_observation(self.kind, 'p', job, 1, {})\n"
    )
    assert literal_kinds(source) == {"port", "traffic.x", "traffic.y"}
