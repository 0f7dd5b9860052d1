"""Server-side SVG charts: no JavaScript library, no CDN, no build step; the page is complete as served."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from markupsafe import Markup

SEVERITY_COLOURS = {
    "critical": "#b00020",
    "high": "#e4572e",
    "medium": "#f3c623",
    "low": "#8ecae6",
    "info": "#bbbbbb",
}


def _nice_max(value: float) -> int:
    """A round axis maximum at or above `value` (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= value:
                return step * m
        step *= 10


def stacked_area(
    points: Sequence[dict[str, Any]],
    series: Sequence[str],
    labels: dict[str, str],
    title: str,
    width: int = 640,
    height: int = 220,
) -> Markup:
    """Active findings per day, stacked by severity (most severe at the bottom). A day without data (nothing
    recorded that day) is a gap in the x axis labels and is drawn at zero height, marked with a hollow tick."""
    left, right, top, bottom = 48, 110, 22, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(points), 1)
    totals = [sum(int(p.get(s, 0) or 0) for s in series) for p in points]
    y_max = _nice_max(max(totals, default=0))

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * v / y_max

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img"'
        f' class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for k in range(5):  # grid and y labels
        v = y_max * k / 4
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e3e8ef"/>'
            f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11" fill="#555">{int(v)}</text>'
        )
    base = [0.0] * len(points)
    for s in series:  # most severe first, at the bottom of the stack, where it is read first
        upper = [base[i] + int(points[i].get(s, 0) or 0) for i in range(len(points))]
        if any(u > b for u, b in zip(upper, base, strict=True)):
            top_line = " ".join(f"{x(i):.1f},{y(u):.1f}" for i, u in enumerate(upper))
            bottom_line = " ".join(f"{x(i):.1f},{y(b):.1f}" for i, b in reversed(list(enumerate(base))))
            out.append(
                f'<polygon points="{top_line} {bottom_line}" fill="{SEVERITY_COLOURS.get(s, "#999")}"'
                f' fill-opacity="0.85" stroke="#fff" stroke-width="0.5" class="series-{escape(s)}"/>'
            )
        base = upper
    for i, p in enumerate(points):
        day = str(p.get("day", ""))
        has = any(s in p for s in series)
        if not has:
            out.append(f'<circle cx="{x(i):.1f}" cy="{y(0):.1f}" r="2.5" fill="#fff" stroke="#999"/>')
        if n <= 8 or i % 2 == (n - 1) % 2:
            out.append(
                f'<text x="{x(i):.1f}" y="{height - 8}" text-anchor="middle" font-size="11" fill="#555">'
                f"{escape(day[5:])}</text>"
            )
        out.append(
            f'<rect x="{x(i) - plot_w / n / 2:.1f}" y="{top}" width="{plot_w / n:.1f}" height="{plot_h}"'
            f' fill="transparent"><title>{escape(day)}: {totals[i] if has else "—"}</title></rect>'
        )
    for k, s in enumerate(series):  # legend, most severe first
        ly = top + 4 + k * 18
        out.append(
            f'<rect x="{left + plot_w + 14}" y="{ly}" width="12" height="12" fill="{SEVERITY_COLOURS.get(s, "#999")}"/>'
            f'<text x="{left + plot_w + 32}" y="{ly + 10}" font-size="12">{escape(labels.get(s, s))}'
            f" {int(points[-1].get(s, 0) or 0) if points else 0}</text>"
        )
    out.append("</svg>")
    return Markup("".join(out))


def availability_bars(rows: Sequence[tuple[str, float | None, float | None]], title: str, width: int = 420) -> Markup:
    """Horizontal bars per tier: availability over 24 h (dark) and 7 d (light), as percentages."""
    row_h, left, right = 34, 90, 70
    height = 16 + row_h * len(rows)
    plot_w = width - left - right
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img"'
        f' class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, day, week) in enumerate(rows):
        y0 = 8 + i * row_h
        out.append(f'<text x="{left - 8}" y="{y0 + 18}" text-anchor="end" font-size="12">{escape(label)}</text>')
        for j, (value, good, name) in enumerate(((day, "#2f6fb3", "24h"), (week, "#9cc3e8", "7d"))):
            yy = y0 + j * 13
            w = plot_w * (value or 0)
            colour = good if value is None or value >= 0.99 else ("#e4572e" if value < 0.95 else "#f3a623")
            out.append(
                f'<rect x="{left}" y="{yy}" width="{plot_w}" height="11" fill="#eef2f7"/>'
                f'<rect x="{left}" y="{yy}" width="{w:.1f}" height="11" fill="{colour}"><title>{name}</title></rect>'
                f'<text x="{left + plot_w + 6}" y="{yy + 10}" font-size="11">{name} '
                f"{'—' if value is None else f'{value * 100:.1f}%'}</text>"
            )
    out.append("</svg>")
    return Markup("".join(out))
