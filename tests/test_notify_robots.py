"""notify/robots.py (and the mail text of notify/render.py): each chat robot gets its own format (no raw `###`/`**` in
Feishu) within its size limit, and the Chinese title and remediation of each rule without markup."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sentinel.models import Finding, FindingStatus, Severity
from sentinel.notify.digest import Digest, Event, Recipient
from sentinel.notify.notifier import Notifier
from sentinel.notify.render import plain_text
from sentinel.notify.robots import dingtalk, feishu, wecom
from sentinel.notify.settings import NotifySettings
from sentinel.store import SqliteStore
from tests.support.engine_lab import shipped_rules
from tests.support.notify_lab import REGISTRY, T0, Hooks, rule_digest, seed


def _finding(i: int, severity: Severity = Severity.HIGH) -> Finding:
    return Finding(
        id=f"{i:064x}",
        rule_id="tls_cert_not_expired",
        title="证书已过期 `**` # 测试",
        severity=severity,
        category="crypto",
        system_id="b1",
        target=f"[fd00::{i:x}]:443",
        status=FindingStatus.OPEN,
        first_seen=T0,
        last_seen=T0,
        occurrences=1,
        evidence={},
        controls=[],
        remediation="更换证书，并在 `nginx.conf` 中启用 **完整证书链**。",
    )


def _digest(n: int, severity: Severity = Severity.HIGH) -> Digest:
    recipient = Recipient("hook:0", frozenset({"乙局"}), frozenset({"b1"}))
    return Digest(recipient, [Event("new", _finding(i, severity)) for i in range(n)])


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def test_feishu_is_a_card_with_lark_md_and_no_raw_markdown() -> None:
    body = feishu(_digest(3, Severity.CRITICAL), REGISTRY, "zh")
    card = body["card"]
    assert body["msg_type"] == "interactive" and card["header"]["template"] == "red"
    assert card["header"]["title"] == {"tag": "plain_text", "content": card["header"]["title"]["content"]}
    assert "乙局" in card["header"]["title"]["content"]
    blocks = [e["text"]["content"] for e in card["elements"] if e["tag"] == "div"]
    assert len(blocks) == 3 and all(b.startswith("**新发现 [严重] 证书已过期") for b in blocks)
    for text in _strings(body):
        assert "###" not in text and "`" not in text
        assert text.count("**") in (0, 2)  # only the item heading is bold, and it is closed
    assert "系统B (b1)" in blocks[0] and "整改建议：更换证书，并在 nginx.conf 中启用 完整证书链。" in blocks[0]


def test_dingtalk_has_a_title_and_paragraphs() -> None:
    body = dingtalk(_digest(2), REGISTRY, "en")
    md = body["markdown"]
    assert body["msgtype"] == "markdown" and md["title"] and len(md["title"]) <= 60
    paragraphs = md["text"].split("\n\n")
    assert paragraphs[0].startswith("### ") and paragraphs[1] == "**New [high] 证书已过期  # 测试**"
    assert paragraphs[2].startswith("- System: 系统B (b1)\n- Target: [fd00::0]:443\n- What to do: ")


def test_wecom_stays_under_its_byte_limit_and_counts_the_rest() -> None:
    body = wecom(_digest(300), REGISTRY, "zh")
    content = body["markdown"]["content"]
    assert len(content.encode()) <= 4096
    shown = content.count("**新发现**")
    assert 1 <= shown < 300 and f"另有 {300 - shown} 项" in content


def test_robots_receive_their_own_format_over_http(tmp_path: Path, hooks: str) -> None:
    store = SqliteStore(tmp_path / "s.db")
    seed(store, T0, {("b1", "tls_cert_not_expired"): True})
    cfg = NotifySettings.model_validate(
        {
            "webhooks": [
                {"url": hooks + "/feishu", "format": "feishu", "secret": "fs"},
                {"url": hooks + "/dingtalk", "format": "dingtalk", "secret": "dt"},
                {"url": hooks + "/wecom", "format": "wecom"},
            ],
            "retry_backoff": 0,
        }
    )
    report = Notifier(cfg, REGISTRY, store, sleep=lambda _: None).run(T0 + timedelta(minutes=1))
    assert not report.failed and len(report.sent) == 3
    by_path = {p.split("?")[0]: (p, json.loads(b)) for p, _, b in Hooks.received}
    feishu_body = by_path["/feishu"][1]
    assert feishu_body["msg_type"] == "interactive" and feishu_body["timestamp"] and feishu_body["sign"]
    assert "timestamp=" in by_path["/dingtalk"][0] and "sign=" in by_path["/dingtalk"][0]
    assert by_path["/dingtalk"][1]["msgtype"] == "markdown" and by_path["/wecom"][1]["msgtype"] == "markdown"
    store.close()


def test_zh_robots_and_mail_show_the_chinese_title_and_remediation_without_markup() -> None:
    rules = [shipped_rules()["tls_weak_suites_rejected"], shipped_rules()["https_hsts_enabled"]]
    d = rule_digest(*rules)
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
