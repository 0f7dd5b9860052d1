"""Text helpers for reports: a rule's words in the report's language, markup, and local (Beijing) time."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from markupsafe import Markup, escape

_CODE = re.compile(r"`([^`]+)`")
_EMPHASIS = re.compile(r"\*\*([^*]+)\*\*|__([^_]+)__")

#: Rule attributes consulted, in order, for a language's text (proposed rule-schema fields: title_zh,
#: remediation_zh; an `i18n: {zh: {title, remediation}}` mapping is read too, whichever the schema adopts).
LOCALISED_FIELDS = {"title": "title_zh", "remediation": "remediation_zh"}


def rule_text(rule: Any, field: str, lang: str, fallback: str) -> tuple[str, bool]:
    """(text, localised): the rule's `field` in `lang`, else `fallback` (the English text) and False."""
    if lang == "en" or rule is None:
        return fallback, lang == "en"
    value = getattr(rule, LOCALISED_FIELDS.get(field, f"{field}_{lang}"), None)
    if not value:
        i18n = getattr(rule, "i18n", None)
        if isinstance(i18n, dict):
            value = (i18n.get(lang) or {}).get(field)
    return (str(value), True) if value else (fallback, False)


def plain(text: str) -> str:
    """Markup stripped (`code` → code, **bold** → bold) and whitespace collapsed: for CSV, XLSX and PDF text."""
    text = _CODE.sub(r"\1", text)
    return " ".join(_unemphasise(text).split())


def _unemphasise(text: str) -> str:
    return _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text)


def rich_html(text: str) -> Markup:
    """Escaped HTML with `code` rendered as <code> (never shown as raw backticks)."""
    out: list[str] = []
    last = 0
    collapsed = " ".join(text.split())
    for m in _CODE.finditer(collapsed):
        out.append(str(escape(_unemphasise(collapsed[last : m.start()]))))
        out.append(f"<code>{escape(m.group(1))}</code>")
        last = m.end()
    out.append(str(escape(_unemphasise(collapsed[last:]))))
    return Markup("".join(out))


def beijing() -> tzinfo:
    """Asia/Shanghai; China has kept UTC+8 without DST since 1991, so a fixed offset is exact if tzdata is absent."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Asia/Shanghai")
    except Exception:  # zoneinfo raises several error types when the tz database is missing
        return timezone(timedelta(hours=8), "CST")


def local_time(when: datetime | str | None, seconds: bool = False) -> str:
    """'2026-11-20 16:00' in Beijing time (naive input is taken as UTC); '—' for nothing."""
    if when is None:
        return "—"
    dt = datetime.fromisoformat(when) if isinstance(when, str) else when
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(beijing()).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def framework_title(title: str, lang: str) -> str:
    """The shipped framework titles end in an English qualifier; a Chinese report says it in Chinese."""
    if lang != "zh":
        return title
    for english in (", network-checkable items", " (network-observable subset)"):
        if title.endswith(english):
            return title[: -len(english)].replace(" and ", "、") + "（可远程检查项）"
    return title
