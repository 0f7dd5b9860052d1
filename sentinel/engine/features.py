"""The stateful features as pure functions of (spec, per-target state, observation view) → derived fields.

Each function reads and updates one JSON-serialisable state dict and writes `change.*`, `baseline.*` or
`window.*` fields that the rule's condition (and the evidence) can read. No clock, no I/O."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from sentinel.engine.stateful_spec import Baseline, Change, Window
from sentinel.textdiff import diff_lines

Differ = Callable[[str, str], list[str]]
DEFAULT_DIFFER: Differ = diff_lines
MAX_TEXT = 20_000  # characters of a text value kept for comparison and diffs
MAX_DIFF_LINES = 60
MAX_LIST = 4096


def _normalise(value: Any) -> Any:
    if isinstance(value, list | tuple | set):
        return sorted({str(v) if isinstance(v, dict | list) else v for v in list(value)[:MAX_LIST]}, key=str)
    if isinstance(value, str):
        return value[:MAX_TEXT]
    return value


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) else None


def derive_change(
    spec: Change, st: dict[str, Any], get: Callable[[str], Any], at: datetime, differ: Differ, hold: bool = False
) -> dict[str, Any]:
    """`hold`: a finding is active on this change, so `relearn_after` does not accept the new value (only
    a return to the learned value, or an operator accepting it, ends the finding)."""
    cur = get(spec.field)
    if cur is None:
        return {}
    cur = _normalise(cur)
    seen = int(st.get("n", 0))

    def remember(value: Any) -> None:
        st["v"] = value
        st["k"] = {name: get(name) for name in spec.keep}
        if spec.diff:
            st["t"] = _text(get(spec.diff))
        st["at"] = at.isoformat()

    if seen < spec.learn:
        learned = st.get("v")
        if isinstance(cur, list) and isinstance(learned, list):
            cur = sorted(set(learned) | set(cur), key=str)
        remember(cur)
        st["n"] = seen + 1
        return {"change.learning": True}

    learned = st.get("v")
    out: dict[str, Any] = {"change.learning": False, "change.previous": learned, "change.current": cur}
    out["change.since"] = st.get("at")
    for name, value in (st.get("k") or {}).items():
        if value is not None:
            out[f"change.before.{name}"] = value
    if isinstance(cur, list) and isinstance(learned, list):
        added = sorted(set(cur) - set(learned), key=str)
        removed = sorted(set(learned) - set(cur), key=str)
        changed = bool(added or removed)
        if added:
            out["change.added"] = added
        if removed:
            out["change.removed"] = removed
    else:
        changed = cur != learned
    if changed:
        if spec.diff:
            old, new = st.get("t"), _text(get(spec.diff))
            if isinstance(old, str) and isinstance(new, str):
                out["change.diff"] = differ(old, new)[:MAX_DIFF_LINES]
        if st.get("c") == cur:
            st["s"] = int(st.get("s", 0)) + 1
        else:
            # The candidate with what `remember` would keep of it, so an operator can accept it later.
            st["c"], st["s"] = cur, 1
            st["ck"] = {name: get(name) for name in spec.keep}
            st["ct"] = _text(get(spec.diff)) if spec.diff else None
        if spec.relearn_after and not hold and st["s"] >= spec.relearn_after:
            remember(cur)
            forget_candidate(st)
            out["change.accepted"] = True
            changed = False
    else:
        forget_candidate(st)
    out["change.changed"] = changed
    return out


def forget_candidate(st: dict[str, Any]) -> None:
    for name in ("c", "s", "ck", "ct"):
        st.pop(name, None)


def accept_candidate(st: dict[str, Any], value: Any, at: datetime) -> None:
    """An operator accepts `value` (the changed value a finding showed) as the new learned value."""
    same = st.get("c") == value
    st["v"] = value
    st["k"] = dict(st.get("ck") or {}) if same else {}
    st["t"] = st.get("ct") if same else None  # the accepted text, for the next diff (unknown if not kept)
    st["at"] = at.isoformat()
    forget_candidate(st)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


OUTLIER_SCORE = 3.0  # samples this many spreads away do not feed the baseline (it would chase the anomaly)


def derive_baseline(
    spec: Baseline, st: dict[str, Any], get: Callable[[str], Any], hold: bool = False
) -> dict[str, Any]:
    """EWMA mean/variance or median/MAD of one field. Outliers are kept out of the baseline, but after
    `learn` outliers in a row the level has really moved and the baseline starts learning again, unless
    `hold` (a finding is active: a problem that lasts is still a problem, not a new normal)."""
    x = _number(get(spec.field))
    if x is None:
        return {}
    n = int(st.get("n", 0))
    expected: float | None = None
    spread: float | None = None
    window: list[float] = [float(v) for v in st.get("w", [])]
    if spec.method == "ewma":
        if n:
            expected, spread = float(st["m"]), math.sqrt(float(st.get("var", 0.0)))
    elif len(window) >= 3:
        expected = statistics.median(window)
        spread = 1.4826 * statistics.median(abs(v - expected) for v in window)
    score: float | None = None
    if expected is not None and spread is not None:
        score = (x - expected) / max(spread, spec.min_spread, 1e-9)
    outlier = spec.outliers == "exclude" and n >= spec.learn and score is not None and abs(score) > OUTLIER_SCORE
    if outlier:
        st["out"] = int(st.get("out", 0)) + 1
        if st["out"] >= spec.learn and not hold:  # a new normal: forget the old level and learn again
            st.clear()
            n = 0
    else:
        st["out"] = 0
        if spec.method == "ewma":
            if n:
                mean, var = float(st["m"]), float(st.get("var", 0.0))
                delta = x - mean
                st["m"] = mean + spec.alpha * delta
                st["var"] = (1 - spec.alpha) * (var + spec.alpha * delta * delta)
            else:
                st["m"], st["var"] = x, 0.0
        else:
            window.append(x)
            st["w"] = window[-spec.window :]
        st["n"] = n + 1
    seen = int(st.get("n", 0))
    level = float(st["m"]) if spec.method == "ewma" and "m" in st else statistics.median(st.get("w") or [x])
    out: dict[str, Any] = {"baseline.samples": seen, "baseline.learning": seen < spec.learn, "baseline.level": level}
    if n >= spec.learn and expected is not None and spread is not None and score is not None:
        out["baseline.expected"] = round(expected, 6)
        out["baseline.spread"] = round(spread, 6)
        out["baseline.score"] = round(score, 3)
    return out


def count_window(spec: Window, st: dict[str, Any], hit: bool, at: datetime) -> tuple[bool | None, dict[str, Any]]:
    """Count one sample into its (UTC) day; the verdict once `days` days each have `min_per_day` samples."""
    today = at.date()
    days: dict[str, list[int]] = st.setdefault("d", {})
    counter = days.setdefault(today.isoformat(), [0, 0])
    counter[0] += 1
    counter[1] += int(hit)
    oldest = today - timedelta(days=spec.days)
    for key in [k for k in days if date.fromisoformat(k) < oldest]:
        del days[key]
    recent = [(today - timedelta(days=i)).isoformat() for i in range(spec.days + 1)]
    qualified = [d for d in recent if d in days and days[d][0] >= spec.min_per_day][: spec.days]
    samples = sum(days[d][0] for d in qualified)
    hits = sum(days[d][1] for d in qualified)
    out: dict[str, Any] = {"window.days": len(qualified), "window.samples": samples, "window.hits": hits}
    if len(qualified) < spec.days or samples == 0:
        return None, out
    ratio = hits / samples
    out["window.ratio"] = round(ratio, 6)
    return ratio >= spec.ratio_at_least, out
