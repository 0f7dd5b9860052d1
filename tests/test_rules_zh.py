"""Issue 13, "a Chinese report is Chinese throughout": every shipped rule carries its Chinese title and
remediation (enforced by `sentinel rules lint`), and reports, notifications and the web view show them."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel.engine.loader import load_rules
from sentinel.engine.paths import shipped_rules_dir
from sentinel.engine.rule import Rule
from sentinel.engine.stateful import flapping_rule
from sentinel.models import Finding, FindingStatus
from sentinel.notify.digest import Digest, Event, Recipient
from sentinel.notify.render import plain_text
from sentinel.notify.robots import dingtalk, feishu, wecom
from sentinel.ruledev.lint import ZH_PENDING, lint
from sentinel.store import SqliteStore
from sentinel.web.i18n import translator
from tests.test_engine_tooling import FIXTURE, RULE, Write, tree
from tests.test_notify import REGISTRY
from tests.test_web import site

__all__ = ["site"]  # the web fixture, shared with test_web

SHIPPED = {r.id: r for r in load_rules([shipped_rules_dir()])}
T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


def test_every_shipped_rule_has_chinese_text_enforced_by_lint() -> None:
    report = lint([shipped_rules_dir()])
    assert not [p for p in report.problems if "_zh" in p.message], report.problems
    missing = sorted(r.id for r in SHIPPED.values() if not (r.title_zh and r.remediation_zh))
    # Only the rules listed as pending may still lack it (today: the traffic rules, written by their owner) ...
    assert set(missing) <= ZH_PENDING, set(missing) - ZH_PENDING
    assert {r for r in SHIPPED if not r.startswith("traffic_")} & set(missing) == set()
    # ... and the list shrinks as they get it: a listed rule that has its text must leave the list.
    assert set(SHIPPED) >= ZH_PENDING and sorted(ZH_PENDING) == missing, sorted(ZH_PENDING - set(missing))
    assert {Path(w.file).stem for w in report.warnings} == ZH_PENDING


def test_shipped_chinese_text_is_plain_chinese() -> None:
    for rule in SHIPPED.values():
        for text in (rule.title_zh, rule.remediation_zh):
            if text:
                assert "`" not in text and "**" not in text and "  " not in text, rule.id
    # the folded YAML blocks wrap Chinese lines without leaving a space where they were joined
    assert SHIPPED["tls_weak_suites_rejected"].remediation_zh.endswith("都排除 !aNULL:!eNULL:!EXPORT:!RC4:!3DES。")
    assert "nginx 配置 ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;" in SHIPPED["tls_weak_suites_rejected"].remediation_zh


def test_lint_requires_chinese_text_of_shipped_rules_and_warns_about_others(write_file: Write) -> None:
    root = tree(write_file)  # a third-party rule tree: no Chinese text
    report = lint([root])
    assert not report.problems
    assert [w.message.split(":")[0] for w in report.warnings] == ["title_zh", "remediation_zh"]
    assert report.warnings[0].line == 2 and report.warnings[1].line == 9  # at the English text's line
    strict = lint([root], require_zh=True)
    assert [p.message.split(":")[0] for p in strict.problems] == ["title_zh", "remediation_zh"]

    bad = RULE.format(id="port_thing", control="8.1.4.4 b)") + "title_zh: Something open\n"
    bad += "remediation_zh: 关闭 `nginx` 端口。\n"
    write_file("rules/ports/port_thing.yaml", bad)
    text = "\n".join(str(p) for p in lint([root]).problems)
    assert "port_thing.yaml:10: title_zh: is not Chinese text" in text
    assert "port_thing.yaml:11: remediation_zh: no Markdown markup" in text

    good = (
        RULE.format(id="port_thing", control="8.1.4.4 b)")
        + "title_zh: 端口开放\nremediation_zh: >\n  关闭端口，\n  或限制访问。\n"
    )
    write_file("rules/ports/port_thing.yaml", good)
    write_file("rules/tests/port_thing.yaml", FIXTURE.format(id="port_thing", second="absent"))
    clean = lint([root], require_zh=True)
    assert not clean.problems and not clean.warnings
    assert clean.rules[0].remediation_zh == "关闭端口，或限制访问。"


def test_chinese_text_is_normalised_for_folded_yaml() -> None:
    rule = Rule.model_validate(
        {
            "id": "port_x",
            "title": "Port open",
            "title_zh": "端口\n开放",
            "severity": "low",
            "category": "exposure",
            "observation": "port",
            "condition": {"field": "state", "op": "eq", "value": "open"},
            "remediation": "Close it.",
            "remediation_zh": "在 nginx 配置 server_tokens off; 后\n重新加载 配置。\n",
        }
    )
    assert rule.title_zh == "端口开放"
    assert rule.remediation_zh == "在 nginx 配置 server_tokens off; 后重新加载配置。"


def finding(rule: Rule, i: int = 0, status: FindingStatus = FindingStatus.OPEN) -> Finding:
    """A finding as the tracker makes it: the rule's English words."""
    return Finding(
        id=f"{i:064x}",
        rule_id=rule.id,
        title=rule.title,
        severity=rule.severity,
        category=rule.category,
        system_id="b1",
        target=f"10.0.1.1:{443 + i}",
        status=status,
        first_seen=T0,
        last_seen=T0,
        occurrences=1,
        remediation=rule.remediation,
    )


def digest(*rules: Rule) -> Digest:
    recipient = Recipient("hook:0", frozenset({"乙局"}), frozenset({"b1"}))
    return Digest(recipient, [Event("new", finding(r, i)) for i, r in enumerate(rules)])


def test_finding_text_translates_only_the_words_the_rule_has() -> None:
    from sentinel.reports.text import finding_text

    rule = SHIPPED["tls_cert_not_expired"]
    f = finding(rule)
    assert finding_text(f, "title", "zh") == "TLS 证书已过期" == rule.title_zh
    assert finding_text(f, "remediation", "zh") == rule.remediation_zh
    assert finding_text(f, "title", "en") == rule.title
    f.title = "Certificate expired (our own rule)"  # a third-party rule reusing the id, or older wording
    assert finding_text(f, "title", "zh") == "Certificate expired (our own rule)"
    assert finding_text(f, "remediation", "zh") == rule.remediation_zh
    assert finding_text(f, "title", "zh", rules={}) == f.title  # the loaded rules, when given, are the source
    companion = flapping_rule(SHIPPED["endpoint_down_sustained"])
    flap = finding(companion)
    assert finding_text(flap, "title", "zh") == "状态频繁波动：端点连续三轮巡检不可达"
    assert finding_text(flap, "remediation", "zh").endswith(SHIPPED["endpoint_down_sustained"].remediation_zh)


def test_zh_robots_and_mail_show_the_chinese_title_and_remediation_without_markup() -> None:
    rules = [SHIPPED["tls_weak_suites_rejected"], SHIPPED["https_hsts_enabled"]]
    d = digest(*rules)
    weak = rules[0]
    contents = [
        wecom(d, REGISTRY, "zh")["markdown"]["content"],
        dingtalk(d, REGISTRY, "zh")["markdown"]["text"],
        "\n".join(e["text"]["content"] for e in feishu(d, REGISTRY, "zh")["card"]["elements"] if e["tag"] == "div"),
        plain_text(d, REGISTRY, "zh"),
    ]
    for text in contents:
        assert weak.title_zh in text and rules[1].title_zh in text
        assert "整改建议" in text and weak.remediation_zh[:40] in text
        assert weak.title not in text and "`" not in text
    english = wecom(d, REGISTRY, "en")["markdown"]["content"]
    assert weak.title in english and weak.title_zh not in english and "`" not in english
    assert "nginx ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;" in plain_text(d, REGISTRY, "en")  # backticks gone


def test_web_translator_gives_the_rule_text_in_the_page_language() -> None:
    f = finding(SHIPPED["http_no_version_disclosure"])
    zh, en = translator("zh"), translator("en")
    assert zh.finding_title(f) == "Web 服务器在响应头中泄露软件版本" and zh["remediation"] == "整改建议"
    assert "nginx 配置 server_tokens off;" in zh.finding_fix(f)
    assert "<code>server_tokens off;</code>" in en.finding_fix(f) and "`" not in en.finding_fix(f)
    assert en.finding_title(f) == f.title


@pytest.mark.parametrize(
    ("lang", "shown", "hidden"),
    [
        ("zh", ("TLS 证书已过期", "高危端口开放"), "TLS certificate has expired"),
        ("en", ("TLS certificate has expired",), "TLS 证书已过期"),
    ],
)
def test_web_pages_show_finding_titles_in_the_page_language(
    site: tuple[str, SqliteStore], lang: str, shown: tuple[str, ...], hidden: str
) -> None:
    base, _ = site

    def page(path: str) -> str:
        req = urllib.request.Request(f"{base}{path}?lang={lang}", headers={"Authorization": "Bearer op-token"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(resp.read().decode())

    alerts = page("/alerts")
    for text in shown:
        assert text in alerts, text
    assert hidden not in alerts
    system = page("/systems/portal")
    assert shown[0] in system and hidden not in system
    rule = SHIPPED["tls_cert_not_expired"]
    fix = rule.remediation_zh if lang == "zh" else "Renew the certificate with the issuing CA"
    assert fix in system and "`" not in system
    overview = page("/")
    assert shown[0] in overview and hidden not in overview  # newest critical findings
