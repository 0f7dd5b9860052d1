"""Personal data in payloads: Chinese resident ID numbers (GB 11643, checksum verified) and mobile numbers.

Finding candidates is a bytes.translate (digits → '0', others → '.') and a substring search, both
C-speed over the whole chunk; only digit runs of the right length are looked at in Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date

_TABLE = bytearray(b"." * 256)
for _c in b"0123456789":
    _TABLE[_c] = ord("0")
_TABLE[ord("X")] = _TABLE[ord("x")] = ord("X")
DIGIT_CLASSES = bytes(_TABLE)
RUN = b"0" * 11
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
MOBILE = re.compile(r"^1[3-9]\d{9}$")
_RUN_END = re.compile(rb"0*X?")


def valid_resident_id(text: str) -> bool:
    """18-character resident ID: region, a real birth date, and the ISO 7064 MOD 11-2 check character."""
    if len(text) != 18 or not text[:17].isdigit() or text[0] not in "12345678":
        return False
    try:
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    if not 1900 <= born.year <= 2100:
        return False
    total = sum(int(d) * w for d, w in zip(text[:17], ID_WEIGHTS, strict=True))
    return ID_CHECK[total % 11] == text[17].upper()


def mask(text: str) -> str:
    keep = 3 if len(text) == 11 else 4
    return text[:keep] + "*" * (len(text) - keep - 2) + text[-2:]


def find_candidates(classes: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """(position, length) of digit runs long enough to be a mobile or ID number, in `classes`."""
    end = len(classes) if end is None else end
    pos = classes.find(RUN, start, end)
    while pos != -1:
        match = _RUN_END.match(classes, pos + 11, end)  # the rest of the run, and an 'X' check character
        stop = match.end() if match else pos + 11
        yield pos, stop - pos
        pos = classes.find(RUN, stop, end)


def classify(raw: bytes) -> tuple[str, str] | None:
    """('id' | 'mobile', masked) for a digit run that is personal data, else None."""
    text = raw.decode("ascii", "replace")
    if len(text) == 18 and valid_resident_id(text):
        return "id", mask(text)
    if len(text) == 13 and text.startswith("86"):
        text = text[2:]
    if len(text) == 11 and MOBILE.match(text):
        return "mobile", mask(text)
    return None
