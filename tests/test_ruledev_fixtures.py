"""The shipped rules pass their fixtures (rules/tests/<rule_id>.yaml) run by ruledev/fixtures.py: the spine and
engine rules (lint-clean too), the services and DNS rules, the HTTP-security and web-integrity rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel.engine.loader import load_rules
from sentinel.paths import shipped_rules_dir
from sentinel.ruledev.fixtures import FixtureRunner, load_fixtures, parse_fixture
from sentinel.ruledev.lint import lint
from tests.support.engine_lab import shipped_rules

WEB_RULES = (
    "http_csp_present",
    "http_frame_protection_present",
    "http_nosniff_present",
    "http_cookies_secure_httponly",
    "http_no_version_disclosure",
    "http_no_directory_listing",
    "http_no_sensitive_paths_exposed",
    "https_hsts_max_age_sufficient",
    "web_no_hidden_gambling_adult_links",
    "web_no_sensitive_keywords",
)
RULES = shipped_rules()


@pytest.mark.parametrize("rule_id", WEB_RULES)
def test_rule_fixtures_pass(rule_id: str) -> None:
    rule = RULES[rule_id]
    loaded = parse_fixture(shipped_rules_dir() / "tests" / f"{rule_id}.yaml")
    results = FixtureRunner([rule]).run(loaded)
    failures = [f"{r.case}: {r.message}" for r in results if not r.ok]
    assert not failures
    expects = {case.expect for case in loaded.fixture.cases}
    assert {"present", "absent"} <= expects  # every rule ships both
    assert rule.controls.mlps and rule.controls.nist_800_53 and rule.controls.cis_v8


def test_gov_web_veto_rules_are_critical_or_high() -> None:
    assert RULES["web_no_hidden_gambling_adult_links"].severity.value == "critical"
    assert RULES["web_no_hidden_gambling_adult_links"].controls.gov_web == ["tampering"]
    assert RULES["http_no_sensitive_paths_exposed"].severity.value == "high"


# Issue 11 defects 4 and 10b: HTTP errors and failed TLS handshakes are findings of their own; a site that answers
# is never "unreachable", and what could not be observed (failed connection, backed-off probe) resolves nothing.
HTTP_STATUS_RULES = (
    "http_server_error",
    "http_client_error",
    "https_tls_handshake_failed",
    "gov_site_availability_weekly",
    "endpoint_reachable",
    "http_latency_within_threshold",
    "http_latency_anomalous",
)


@pytest.mark.parametrize("rule_id", HTTP_STATUS_RULES)
def test_http_status_rule_fixtures_pass(rule_id: str) -> None:
    loaded = parse_fixture(shipped_rules_dir() / "tests" / f"{rule_id}.yaml")
    results = FixtureRunner([RULES[rule_id]]).run(loaded)
    failures = [f"{r.case}: {r.message}" for r in results if not r.ok]
    assert not failures
    assert results and all(r.ok for r in results)


def test_http_error_rules_are_debounced_and_resolve_on_the_first_good_status() -> None:
    for rule_id in ("http_server_error", "http_client_error"):
        rule = RULES[rule_id]
        assert (rule.for_, rule.clear_after) == (2, 1), rule_id
    assert RULES["http_server_error"].severity.value == "high"
    assert RULES["https_tls_handshake_failed"].severity.value == "high"


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


SERVICE_AND_DNS_RULES = [shipped_rules_dir() / "services", shipped_rules_dir() / "dns"]


def test_fixtures_of_the_service_and_dns_rules_pass() -> None:
    rules = [
        r
        for r in load_rules(SERVICE_AND_DNS_RULES)
        if r.id.startswith(("service_", "dns_")) and r.id != "dns_answer_changed"
    ]
    assert len(rules) == 10
    ids = {r.id for r in rules}
    fixtures, problems = load_fixtures([shipped_rules_dir()])
    assert [p for p in problems if Path(p.file).stem in ids] == []
    runner = FixtureRunner(rules)
    mine = [f for f in fixtures if f.fixture.rule in ids]
    assert {f.fixture.rule for f in mine} == {r.id for r in rules}
    results = [result for f in mine for result in runner.run(f)]
    assert [(r.rule_id, r.case, r.message) for r in results if not r.ok] == []
    for rule in rules:
        outcomes = {c.expect for f in mine if f.fixture.rule == rule.id for c in f.fixture.cases}
        assert {"present", "absent"} <= outcomes, rule.id
