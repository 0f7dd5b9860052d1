"""Digest text in Chinese or English: a subject, plain text (mail), JSON (generic webhook); robots: `robots.py`.

A finding's title and remediation are shown in the digest's language: the rule's `title_zh`/`remediation_zh`
looked up by rule id (`sentinel.reports.text.finding_text`; `rules` defaults to the shipped rules), with markup
such as backticks taken out (mail is plain text). The generic webhook's JSON keeps the finding as stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sentinel.notify.digest import Digest, Event
from sentinel.registry.models import Registry
from sentinel.reports.text import finding_text, plain

if TYPE_CHECKING:
    from sentinel.engine.rule import Rule

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "subject": "[Sentinel] {dept}：{new} 个新问题，{reopened} 个复现，{resolved} 个已解决",
        "urgent": "[Sentinel 紧急] {dept}：{n} 个严重问题",
        "new": "新发现",
        "reopened": "再次出现",
        "resolved": "已解决",
        "overdue": "已超期",
        "overdue_subject": "，{n} 个已超期未整改",
        "system": "系统",
        "target": "目标",
        "severity": "严重性",
        "since": "首次发现",
        "fix": "整改建议",
        "footer": "本邮件由 Sentinel 网络安全监测系统自动发送，仅包含贵部门负责的系统。",
    },
    "en": {
        "subject": "[Sentinel] {dept}: {new} new, {reopened} reopened, {resolved} resolved",
        "urgent": "[Sentinel URGENT] {dept}: {n} critical findings",
        "new": "New",
        "reopened": "Seen again",
        "resolved": "Resolved",
        "overdue": "Overdue",
        "overdue_subject": ", {n} overdue",
        "system": "System",
        "target": "Target",
        "severity": "Severity",
        "since": "First seen",
        "fix": "What to do",
        "footer": "Sent by Sentinel network monitoring; it covers only the systems your department owns.",
    },
}
SEVERITY_NAMES: dict[str, dict[str, str]] = {
    "zh": {"critical": "严重", "high": "高", "medium": "中", "low": "低", "info": "提示"},
    "en": {s: s for s in ("critical", "high", "medium", "low", "info")},
}


def _dept(digest: Digest, registry: Registry) -> str:
    depts = sorted(
        {registry.by_id[sid].owner.department for sid in digest.recipient.system_ids if sid in registry.by_id}
    )
    return "、".join(depts[:3]) + (" …" if len(depts) > 3 else "") if depts else "-"


def subject(digest: Digest, registry: Registry, lang: str) -> str:
    t = LABELS[lang]
    counts = digest.counts
    if digest.immediate:
        return t["urgent"].format(dept=_dept(digest, registry), n=len(digest.events))
    text = t["subject"].format(
        dept=_dept(digest, registry),
        new=counts.get("new", 0),
        reopened=counts.get("reopened", 0),
        resolved=counts.get("resolved", 0),
    )
    late = counts.get("overdue", 0)
    return text + (t["overdue_subject"].format(n=late) if late else "")


def title(e: Event, lang: str, rules: Mapping[str, Rule] | None = None) -> str:
    """The finding's title in `lang`, as plain text."""
    return plain(finding_text(e.finding, "title", lang, rules))


def remediation(e: Event, lang: str, rules: Mapping[str, Rule] | None = None) -> str:
    """The finding's remediation in `lang`, as plain text on one line."""
    return plain(finding_text(e.finding, "remediation", lang, rules))


def _line_items(
    e: Event, registry: Registry, lang: str, rules: Mapping[str, Rule] | None = None
) -> list[tuple[str, str]]:
    t = LABELS[lang]
    f = e.finding
    system = registry.by_id.get(f.system_id)
    items = [
        (t["system"], f"{system.name} ({f.system_id})" if system else f.system_id),
        (t["target"], f.target),
        (t["severity"], SEVERITY_NAMES[lang][f.severity.value]),
        (t["since"], f.first_seen.strftime("%Y-%m-%d %H:%M UTC")),
    ]
    if e.kind != "resolved":
        items.append((t["fix"], remediation(e, lang, rules)))
    return items


def plain_text(digest: Digest, registry: Registry, lang: str, rules: Mapping[str, Rule] | None = None) -> str:
    t = LABELS[lang]
    lines = [subject(digest, registry, lang), ""]
    for kind in ("new", "reopened", "overdue", "resolved"):
        events = [e for e in digest.events if e.kind == kind]
        if not events:
            continue
        lines.append(f"== {t[kind]} ({len(events)}) ==")
        for e in events:
            lines.append(f"* {title(e, lang, rules)}")
            lines.extend(f"    {k}: {v}" for k, v in _line_items(e, registry, lang, rules))
            lines.append(f"    id: {e.finding.id[:12]}")
        lines.append("")
    lines.append(t["footer"])
    return "\n".join(lines)


def as_json(digest: Digest, registry: Registry, lang: str) -> dict[str, Any]:
    return {
        "subject": subject(digest, registry, lang),
        "immediate": digest.immediate,
        "recipient": digest.recipient.key,
        "counts": digest.counts,
        "events": [{"event": e.kind, **e.finding.to_dict()} for e in digest.events],
    }
