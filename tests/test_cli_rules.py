"""`sentinel rules lint` and `sentinel rules test` on a rule tree: exit codes, located failures, fixture runs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sentinel.cli.rules_cmd import rules
from sentinel.errors import InputError
from sentinel.ruledev.fixtures import FixtureRunner
from tests.support.rule_tree import FIXTURE, RULE, Write, tree


def test_cli_lint_exits_2_on_problems_and_0_when_clean(write_file: Write) -> None:
    root = tree(write_file)
    result = CliRunner().invoke(rules, ["lint", str(root)], standalone_mode=False)
    assert result.exception is None and result.return_value == 0, result.output
    write_file("rules/ports/port_thing.yaml", "id: port_thing\ntitle: x\n")
    result = CliRunner().invoke(rules, ["lint", str(root)], standalone_mode=False)
    assert isinstance(result.exception, InputError)


def test_cli_test_reports_failures_with_exit_1(write_file: Write) -> None:
    root = tree(write_file)
    ok = CliRunner().invoke(rules, ["test", str(root)], standalone_mode=False)
    assert ok.return_value == 0 and "2 passed, 0 failed" in ok.output
    write_file("rules/tests/port_thing.yaml", FIXTURE.format(id="port_thing", second="present"))
    bad = CliRunner().invoke(rules, ["test", str(root)], standalone_mode=False)
    assert bad.return_value == 1
    assert (
        "FAIL  " in bad.output
        and "port_thing.yaml:6: port_thing: closed does not: expected port_thing present, got absent" in bad.output
    )


def test_invalid_fixture_is_an_input_error(write_file: Write) -> None:
    root = tree(write_file)
    write_file("rules/tests/port_thing.yaml", "rule: port_thing\ncases:\n  - name: x\n    expect: maybe\n")
    result = CliRunner().invoke(rules, ["test", str(root)], standalone_mode=False)
    assert isinstance(result.exception, InputError)
    assert any(p.line == 4 for p in result.exception.problems)


def test_pcap_cases_need_the_traffic_analyser(write_file: Write, monkeypatch: pytest.MonkeyPatch) -> None:
    from functools import partial

    from sentinel.cli import rules_cmd

    monkeypatch.setattr(rules_cmd, "FixtureRunner", partial(FixtureRunner, read_pcap=None))
    root = tree(write_file)
    write_file(
        "rules/tests/port_thing.yaml",
        FIXTURE.format(id="port_thing", second="absent")
        + "  - name: capture\n    pcap: traffic/x.pcap\n    expect_findings: [{rule_id: port_thing}]\n",
    )
    result = CliRunner().invoke(rules, ["test", str(root)], standalone_mode=False)
    assert result.return_value == 1
    assert "ERROR" in result.output and "traffic analyser not available" in result.output


def test_sweep_fixtures_check_each_step(write_file: Write) -> None:
    root = tree(write_file)
    write_file(
        "rules/ports/port_held.yaml",
        RULE.format(id="port_held", control="8.1.4.4 b)") + "for: 2\n",
    )
    write_file(
        "rules/tests/port_held.yaml",
        """
        rule: port_held
        cases:
          - name: needs two sweeps
            sweeps:
              - {observation: {target: "h:1/tcp", data: {state: open}}, expect: unknown}
              - {observation: {target: "h:1/tcp", data: {state: open}}, expect: present}
              - {observation: {target: "h:1/tcp", data: {state: closed}}, expect: absent}
        """,
    )
    result = CliRunner().invoke(rules, ["test", str(root), "--rule", "port_held", "-v"], standalone_mode=False)
    assert result.return_value == 0 and "PASS  port_held: needs two sweeps" in result.output
