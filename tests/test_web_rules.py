"""The HTTP-security and web-integrity rules pass their fixtures (rules/tests/<rule_id>.yaml)."""

from __future__ import annotations

import pytest

from sentinel.engine.loader import load_rules
from sentinel.engine.paths import shipped_rules_dir
from sentinel.ruledev.fixtures import FixtureRunner, parse_fixture

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
RULES = {r.id: r for r in load_rules([shipped_rules_dir()])}


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
