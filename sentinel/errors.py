"""One exception tree for the whole package.

User mistakes (bad YAML, bad rules, bad flags) are `InputError`s that carry every problem
found with its location, so the CLI can print them all as `FILE:LINE: message` and exit 2.
A target misbehaving is never an exception: collectors turn it into an error observation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one input file, at one place."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


class SentinelError(Exception):
    """Base class of every error Sentinel raises on purpose."""


class InputError(SentinelError):
    """A user-supplied file or value is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line or 0, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class StoreError(SentinelError):
    """The embedded store cannot be opened or written (locked, full disk, newer schema)."""


class CorruptStoreError(StoreError):
    """The store file is damaged or is not an SQLite database: Sentinel neither reads nor writes it."""
