"""`sentinel rules lint` and `sentinel rules test`: located errors, cross-rule checks, fixture runs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from sentinel.cli.rules_cmd import rules
from sentinel.engine.loader import load_rules
from sentinel.engine.paths import shipped_rules_dir
from sentinel.errors import InputError
from sentinel.ruledev.fixtures import FixtureRunner, load_fixtures
from sentinel.ruledev.lint import lint

Write = Callable[[str, str], Path]

RULE = """
id: {id}
title: Something open
severity: medium
category: exposure
observation: port
condition: {{field: state, op: eq, value: open}}
controls:
  mlps: ["{control}"]
remediation: Close it.
"""

FIXTURE = """
rule: {id}
cases:
  - name: open fires
    expect: present
    observation: {{kind: port, target: "h:1/tcp", data: {{state: open}}}}
  - name: closed does not
    expect: {second}
    observation: {{kind: port, target: "h:1/tcp", data: {{state: closed}}}}
"""


def tree(write: Write, control: str = "8.1.4.4 b)", second: str = "absent") -> Path:
    write("rules/ports/port_thing.yaml", RULE.format(id="port_thing", control=control))
    write("rules/tests/port_thing.yaml", FIXTURE.format(id="port_thing", second=second))
    frameworks = shipped_rules_dir() / "frameworks"
    shutil.copytree(frameworks, write("rules/frameworks/.keep", "").parent, dirs_exist_ok=True)
    return write("rules/.keep", "").parent


SPINE_AND_ENGINE_RULES = {
    "endpoint_reachable", "http_latency_within_threshold", "http_redirects_to_https", "https_hsts_enabled",
    "port_declared_open", "port_high_risk_closed", "port_undeclared_closed", "scope_target_in_scope",
    "tls_cert_chain_valid", "tls_cert_not_expired", "tls_cert_not_expiring_soon", "tls_cert_trusted_for_host",
    "tls_protocol_modern", "endpoint_down_sustained", "gov_site_availability_weekly", "http_latency_anomalous",
    "http_availability_degraded", "port_newly_open", "tls_cert_changed_early", "dns_answer_changed",
    "web_content_changed", "banner_changed", "collector_silent", "district_silent",
}  # fmt: skip


def test_shipped_engine_rules_lint_clean_and_their_fixtures_pass() -> None:
    report = lint([shipped_rules_dir()])
    assert not [p for p in report.problems if Path(p.file).stem in SPINE_AND_ENGINE_RULES]
    runner = FixtureRunner(load_rules([shipped_rules_dir()]))
    fixtures, problems = load_fixtures([shipped_rules_dir()])
    assert not problems
    results = [r for f in fixtures if f.fixture.rule in SPINE_AND_ENGINE_RULES for r in runner.run(f)]
    failures = [r for r in results if not r.ok and not r.error]
    assert not failures, failures
    assert {r.rule_id for r in results} == SPINE_AND_ENGINE_RULES


def test_lint_reports_every_problem_with_file_and_line(write_file: Write) -> None:
    root = tree(write_file, control="9.9.9 z)", second="present")
    write_file("rules/ports/port_other.yaml", RULE.format(id="port_thing", control="8.1.4.4 b)"))
    write_file(
        "rules/ports/no_fixture.yaml", RULE.format(id="no_fixture", control="8.1.4.4 b)").replace("medium", "huge")
    )
    write_file("rules/tests/ghost_rule.yaml", FIXTURE.format(id="ghost_rule", second="absent"))
    text = "\n".join(str(p) for p in lint([root]).problems)
    assert "port_thing.yaml:8: controls.mlps: '9.9.9 z)' is not a control" in text
    assert "port_other.yaml:1: rule id 'port_thing' must equal the file name" in text
    assert "duplicate rule id 'port_thing'" in text
    assert "no_fixture.yaml:3: severity" in text
    assert "tests/port_thing.yaml:1: fixture needs at least one 'absent' case" in text
    assert "ghost_rule.yaml:1: fixture for unknown rule 'ghost_rule'" in text


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
