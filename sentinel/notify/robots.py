"""Chat-robot messages in each robot's own format: WeCom markdown, DingTalk markdown, a Feishu card.

The three robots understand different markup: WeCom renders headings, bold, quotes and coloured
`<font>`; DingTalk renders headings, bold and paragraphs split by blank lines; Feishu's webhook renders
no Markdown headings at all, only `lark_md` inside an interactive card. One digest model (`RobotItem`s)
is laid out per robot so that nothing shows up as raw `###` or `**`.

Robots also cap message size: WeCom at 4,096 bytes of UTF-8 (about 1,300 Chinese characters), the others
somewhat higher. Items are added while they fit and the rest are counted, never cut mid-line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sentinel.notify import render
from sentinel.notify.digest import Digest
from sentinel.notify.render import LABELS, SEVERITY_NAMES, subject
from sentinel.registry.models import Registry

if TYPE_CHECKING:
    from sentinel.engine.rule import Rule

#: message budgets in UTF-8 bytes, below each robot's documented limit
BYTE_BUDGET = {"wecom": 4000, "dingtalk": 16000, "feishu": 24000}
MAX_ITEMS = 20

# Backticks and asterisks are markup to every robot; angle brackets open WeCom's <font> tags. Brackets stay:
# they bracket IPv6 literals in targets.
_MARKUP = re.compile(r"[`*]")
_ANGLES = str.maketrans({"<": "＜", ">": "＞"})


@dataclass(frozen=True)
class RobotItem:
    kind: str  # new, reopened, overdue, resolved
    severity: str
    title: str
    system: str
    target: str
    fix: str | None
    finding_id: str


def items(digest: Digest, registry: Registry, lang: str, rules: Mapping[str, Rule] | None = None) -> list[RobotItem]:
    """One item per event; title and remediation in `lang` (render.title/render.remediation)."""
    out = []
    for e in digest.events:
        f = e.finding
        system = registry.by_id.get(f.system_id)
        out.append(
            RobotItem(
                kind=e.kind,
                severity=f.severity.value,
                title=plain(render.title(e, lang, rules)),
                system=plain(f"{system.name} ({f.system_id})" if system else f.system_id),
                target=plain(f.target),
                fix=plain(render.remediation(e, lang, rules))[:300] if e.kind != "resolved" else None,
                finding_id=f.id[:12],
            )
        )
    return out


def plain(text: str) -> str:
    """Text from rules and targets, with characters that robots read as markup taken out."""
    return _MARKUP.sub("", text).translate(_ANGLES)


def _fit(render: Callable[[list[str], int], dict[str, Any]], blocks: list[str], budget: int) -> dict[str, Any]:
    """The body with as many leading blocks as fit in `budget` bytes; the rest are counted in the body."""
    for n in range(min(len(blocks), MAX_ITEMS), -1, -1):
        body = render(blocks[:n], len(blocks) - n)
        if len(json.dumps(body, ensure_ascii=False).encode()) <= budget:
            return body
    return render([], len(blocks))


def _sep(lang: str) -> str:
    return "：" if lang == "zh" else ": "


def _severity(lang: str, item: RobotItem) -> str:
    return SEVERITY_NAMES[lang][item.severity]


def wecom(digest: Digest, registry: Registry, lang: str, rules: Mapping[str, Rule] | None = None) -> dict[str, Any]:
    t = LABELS[lang]
    colour = {"critical": "warning", "high": "warning", "medium": "comment"}
    c = _sep(lang)
    blocks = [
        f'**{t[i.kind]}** <font color="{colour.get(i.severity, "info")}">[{_severity(lang, i)}]</font> {i.title}\n'
        f"> {t['system']}{c}{i.system}\n> {t['target']}{c}{i.target}" + (f"\n> {t['fix']}{c}{i.fix}" if i.fix else "")
        for i in items(digest, registry, lang, rules)
    ]

    def render(shown: list[str], more: int) -> dict[str, Any]:
        parts = [f"### {plain(subject(digest, registry, lang))}", *shown]
        if more:
            parts.append(_more(lang, more))
        return {"msgtype": "markdown", "markdown": {"content": "\n\n".join(parts)}}

    return _fit(render, blocks, BYTE_BUDGET["wecom"])


def dingtalk(digest: Digest, registry: Registry, lang: str, rules: Mapping[str, Rule] | None = None) -> dict[str, Any]:
    t = LABELS[lang]
    c = _sep(lang)
    # DingTalk joins single newlines: list items and blank lines keep lines apart
    blocks = [
        f"**{t[i.kind]} [{_severity(lang, i)}] {i.title}**\n\n"
        f"- {t['system']}{c}{i.system}\n- {t['target']}{c}{i.target}" + (f"\n- {t['fix']}{c}{i.fix}" if i.fix else "")
        for i in items(digest, registry, lang, rules)
    ]
    title = plain(subject(digest, registry, lang))

    def render(shown: list[str], more: int) -> dict[str, Any]:
        parts = [f"### {title}", *shown]
        if more:
            parts.append(_more(lang, more))
        parts.append(t["footer"])
        return {"msgtype": "markdown", "markdown": {"title": title[:60], "text": "\n\n".join(parts)}}

    return _fit(render, blocks, BYTE_BUDGET["dingtalk"])


def feishu(digest: Digest, registry: Registry, lang: str, rules: Mapping[str, Rule] | None = None) -> dict[str, Any]:
    """An interactive card: a coloured header with the subject, one `lark_md` block per finding."""
    t = LABELS[lang]
    found = items(digest, registry, lang, rules)
    worst = {i.severity for i in found if i.kind != "resolved"}
    c = _sep(lang)
    template = "red" if digest.immediate or "critical" in worst else "orange" if "high" in worst else "blue"
    blocks = [
        f"**{t[i.kind]} [{_severity(lang, i)}] {i.title}**\n"
        f"{t['system']}{c}{i.system}\n{t['target']}{c}{i.target}" + (f"\n{t['fix']}{c}{i.fix}" if i.fix else "")
        for i in found
    ]

    def render(shown: list[str], more: int) -> dict[str, Any]:
        elements: list[dict[str, Any]] = []
        for block in shown:
            if elements:
                elements.append({"tag": "hr"})
            elements.append({"tag": "div", "text": {"tag": "lark_md", "content": block}})
        note = t["footer"] + (f" {_more(lang, more)}" if more else "")
        elements.append({"tag": "note", "elements": [{"tag": "plain_text", "content": note}]})
        return {
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": True},
                "header": {
                    "title": {"tag": "plain_text", "content": subject(digest, registry, lang)},
                    "template": template,
                },
                "elements": elements,
            },
        }

    return _fit(render, blocks, BYTE_BUDGET["feishu"])


def _more(lang: str, n: int) -> str:
    return f"…… 另有 {n} 项，请在 Sentinel 中查看" if lang == "zh" else f"… and {n} more in Sentinel"


ROBOTS: dict[str, Callable[[Digest, Registry, str, Mapping[str, Rule] | None], dict[str, Any]]] = {
    "wecom": wecom,
    "dingtalk": dingtalk,
    "feishu": feishu,
}
