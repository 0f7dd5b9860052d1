"""reports/text.py: a finding's title and remediation in the report's language, from the rule's own words only."""

from __future__ import annotations

from sentinel.engine.stateful import flapping_rule
from sentinel.reports.text import finding_text
from tests.support.engine_lab import shipped_rules
from tests.support.notify_lab import rule_finding

SHIPPED = shipped_rules()


def test_finding_text_translates_only_the_words_the_rule_has() -> None:
    rule = SHIPPED["tls_cert_not_expired"]
    f = rule_finding(rule)
    assert finding_text(f, "title", "zh") == "TLS 证书已过期" == rule.title_zh
    assert finding_text(f, "remediation", "zh") == rule.remediation_zh
    assert finding_text(f, "title", "en") == rule.title
    f.title = "Certificate expired (our own rule)"  # a third-party rule reusing the id, or older wording
    assert finding_text(f, "title", "zh") == "Certificate expired (our own rule)"
    assert finding_text(f, "remediation", "zh") == rule.remediation_zh
    assert finding_text(f, "title", "zh", rules={}) == f.title  # the loaded rules, when given, are the source
    companion = flapping_rule(SHIPPED["endpoint_down_sustained"])
    flap = rule_finding(companion)
    assert finding_text(flap, "title", "zh") == "状态频繁波动：端点连续三轮巡检不可达"
    assert finding_text(flap, "remediation", "zh").endswith(SHIPPED["endpoint_down_sustained"].remediation_zh)
