"""web/i18n.py: the translator gives a rule's title and remediation in the page's language, markup rendered."""

from __future__ import annotations

from sentinel.web.i18n import translator
from tests.support.engine_lab import shipped_rules
from tests.support.notify_lab import rule_finding

SHIPPED = shipped_rules()


def test_web_translator_gives_the_rule_text_in_the_page_language() -> None:
    f = rule_finding(SHIPPED["http_no_version_disclosure"])
    zh, en = translator("zh"), translator("en")
    assert zh.finding_title(f) == "Web 服务器在响应头中泄露软件版本" and zh["remediation"] == "整改建议"
    assert "nginx 配置 server_tokens off;" in zh.finding_fix(f)
    assert "<code>server_tokens off;</code>" in en.finding_fix(f) and "`" not in en.finding_fix(f)
    assert en.finding_title(f) == f.title
