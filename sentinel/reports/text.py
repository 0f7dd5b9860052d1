"""Text helpers for reports, notifications and the web view: a rule's or a finding's words in a language, markup,
and local (Beijing) time."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Protocol

from markupsafe import Markup, escape

if TYPE_CHECKING:
    from sentinel.engine.rule import Rule

log = logging.getLogger(__name__)

_CODE = re.compile(r"`([^`]+)`")
_EMPHASIS = re.compile(r"\*\*([^*]+)\*\*|__([^_]+)__")

#: The Chinese words of a `<id>_flapping` companion finding (sentinel.engine.stateful.flapping_rule writes English).
FLAPPING_TITLE_ZH = "状态频繁波动：{}"
FLAPPING_REMEDIATION_ZH = (
    "查明间歇性故障的根因（过载、负载均衡后端节点故障、链路不稳定），不要只处理表象。原整改建议：{}"
)
_FLAPPING_SUFFIX = "_flapping"


def rule_text(rule: Any, field: str, lang: str, fallback: str) -> tuple[str, bool]:
    """(text, localised): the rule's `field` in `lang` (its `<field>_<lang>` attribute: `title_zh`,
    `remediation_zh`), else `fallback` (the English text) and False."""
    if lang == "en" or rule is None:
        return fallback, lang == "en"
    value = getattr(rule, f"{field}_{lang}", None)
    return (str(value), True) if value else (fallback, False)


class FindingText(Protocol):
    """What `finding_text` reads of a finding (sentinel.models.Finding)."""

    rule_id: str
    title: str
    remediation: str


@functools.cache
def shipped_rules() -> Mapping[str, Rule]:
    """The shipped rules by id, loaded once per process: the Chinese text of findings shown where the loaded rule
    set is not at hand (notifications, the web view). Empty (English shown) if they cannot be loaded."""
    from sentinel.engine.loader import load_rules
    from sentinel.errors import InputError
    from sentinel.paths import shipped_rules_dir

    try:
        return {r.id: r for r in load_rules([shipped_rules_dir()])}
    except (InputError, OSError) as exc:
        log.warning("shipped rules not loaded, findings are shown in English: %s", exc)
        return {}


def _same(a: str, b: str) -> bool:
    return a.split() == b.split()


def finding_text(finding: FindingText, field: str, lang: str, rules: Mapping[str, Rule] | None = None) -> str:
    """A finding's `title` or `remediation` in `lang`.

    A finding stores the English words of its rule (the tracker copies them); the translation comes from the rule
    with the finding's id in `rules` (default: the shipped rules), and only when that rule's English text is the
    finding's, so a third-party rule that reuses a shipped id, or a finding from before a rule's wording changed,
    keeps its own English text rather than a translation of other words. `<id>_flapping` companions are
    translated from their base rule. Anything else: the finding's own text."""
    english: str = getattr(finding, field)
    if lang == "en":
        return english
    catalogue = shipped_rules() if rules is None else rules
    rule = catalogue.get(finding.rule_id)
    if rule is not None:
        return rule_text(rule, field, lang, english)[0] if _same(getattr(rule, field), english) else english
    base_id = finding.rule_id.removesuffix(_FLAPPING_SUFFIX)
    base = catalogue.get(base_id) if base_id != finding.rule_id else None
    if base is None or base.flapping is None or lang != "zh":
        return english
    from sentinel.engine.stateful import flapping_rule

    companion = flapping_rule(base)
    local, ok = rule_text(base, field, lang, english)
    if not ok or not _same(getattr(companion, field), english):
        return english
    return (FLAPPING_TITLE_ZH if field == "title" else FLAPPING_REMEDIATION_ZH).format(local)


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
