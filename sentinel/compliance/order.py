"""Natural order of control ids: 3.3 before 13.10, `8.1.4.7 a)` before `8.1.4.7 b)` before `8.1.4.10 a)`."""

from __future__ import annotations

import re

_PART = re.compile(r"\d+|[^\W\d_]+")


def natural_key(control: str) -> tuple[tuple[int, int, str], ...]:
    """Numbers compare as numbers, letters as text; punctuation (dots, brackets) only separates parts.

    Each part is (kind, number, text) so that numbers and words never compare with each other directly."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in _PART.findall(control))
