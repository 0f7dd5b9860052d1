"""Evidence and observation data rendered for people: certificate facts as a table, a content change as a diff,
Chinese as Chinese (never JSON with \\u escapes), long values cut with a note."""

from __future__ import annotations

from html import escape
from typing import Any

from markupsafe import Markup

MAX_TEXT = 400
MAX_ITEMS = 20
#: evidence fields that hold a unified diff (a list of lines or one text)
DIFF_FIELDS = ("change.diff",)


def _value(value: Any) -> str:
    """One value as HTML text."""
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, bool):
        return "✔ true" if value else "✘ false"
    if isinstance(value, float):
        return escape(f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 1e12 else f"{value:g}")
    if isinstance(value, list | tuple):
        if not value:
            return '<span class="muted">(none)</span>'
        items = [f"<li>{_value(v)}</li>" for v in value[:MAX_ITEMS]]
        more = f'<li class="muted">… {len(value) - MAX_ITEMS} more</li>' if len(value) > MAX_ITEMS else ""
        return f'<ul class="ev-list">{"".join(items)}{more}</ul>'
    if isinstance(value, dict):
        rows = "".join(
            f"<tr><th>{escape(str(k))}</th><td>{_value(v)}</td></tr>" for k, v in list(value.items())[:MAX_ITEMS]
        )
        return f'<table class="ev-nested">{rows}</table>'
    text = str(value)
    if len(text) > MAX_TEXT:
        return escape(text[:MAX_TEXT]) + f'<span class="muted"> … ({len(text)} characters)</span>'
    return escape(text)


def _diff(lines: Any) -> str:
    if isinstance(lines, str):
        lines = lines.splitlines()
    if not isinstance(lines, list | tuple):
        return _value(lines)
    out = []
    for line in (str(x) for x in lines[:200]):
        cls = (
            "hunk"
            if line.startswith("@@")
            else "file"
            if line.startswith(("+++", "---"))
            else "add"
            if line.startswith("+")
            else "del"
            if line.startswith("-")
            else "ctx"
        )
        out.append(f'<span class="d-{cls}">{escape(line)}</span>')
    return '<pre class="diff">' + "\n".join(out) + "</pre>"


def render_evidence(evidence: dict[str, Any] | None) -> Markup:
    """Certificate facts (cert.*) as one table, a diff as a diff, every other field as a key/value row."""
    if not evidence:
        return Markup('<span class="muted">—</span>')
    cert = {k[5:]: v for k, v in evidence.items() if k.startswith("cert.")}
    diffs = {k: v for k, v in evidence.items() if k in DIFF_FIELDS}
    rest = {k: v for k, v in evidence.items() if not k.startswith("cert.") and k not in DIFF_FIELDS}
    parts = []
    if cert:
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{_value(v)}</td></tr>" for k, v in sorted(cert.items()))
        parts.append(f'<table class="ev ev-cert"><caption>certificate</caption>{rows}</table>')
    if rest:
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{_value(v)}</td></tr>" for k, v in rest.items())
        parts.append(f'<table class="ev">{rows}</table>')
    for v in diffs.values():
        parts.append(_diff(v))
    return Markup("".join(parts))


def render_data(data: dict[str, Any] | None, limit: int = 30) -> Markup:
    """An observation's fields, the same way (bounded: an observation can carry many fields)."""
    if not data:
        return Markup('<span class="muted">—</span>')
    items = list(data.items())
    shown = dict(items[:limit])
    html = render_evidence(shown)
    if len(items) > limit:
        html = Markup(f'{html}<div class="muted">… {len(items) - limit} more fields</div>')
    return html
