"""The user-maintained catalogue of known-vulnerable product versions (`rules/data/vulnerable_versions.yaml`).

An entry names a product (as the banner and exposure probes report it), the affected versions
(a half-open range `introduced <= v < fixed`, or an explicit `versions` list) and CVE ids. Versions
compare piecewise: numbers numerically, letters as text, so `8.9p1 < 9.8p1` and `1.3.5 < 1.3.5a`.
Matching is by upstream version only: a distribution that backports fixes without changing the
version string (Debian, RHEL, Ubuntu) gives false positives, which the finding's banner lets an
operator recognise and suppress.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sentinel.errors import InputError, Problem
from sentinel.paths import shipped_rules_dir
from sentinel.yamlio import load_yaml_file, validation_problems

CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,}$")
_PIECE = re.compile(r"\d+|[a-z]+", re.I)
MAX_MATCHES = 16


def default_catalogue_path() -> Path:
    return shipped_rules_dir() / "data" / "vulnerable_versions.yaml"


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    """A version string compared piece by piece (numbers as numbers, letters as lower-case text)."""

    text: str
    pieces: tuple[tuple[int, int | str], ...]

    @classmethod
    def parse(cls, text: str) -> Version:
        pieces = tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in _PIECE.findall(text))
        if not pieces or pieces[0][0] != 0:
            raise ValueError(f"'{text}' is not a version (it must start with a number)")
        return cls(text, pieces)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        for (ka, va), (kb, vb) in zip(self.pieces, other.pieces, strict=False):
            if ka != kb:  # a number sorts after letters at the same place: 1.3.5a < 1.3.5.1
                return ka > kb
            if va != vb:
                return va < vb  # type: ignore[operator]
        return len(self.pieces) < len(other.pieces)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self.pieces == other.pieces

    def __hash__(self) -> int:
        return hash(self.pieces)


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    product: str = Field(min_length=1, max_length=64)
    introduced: str | None = None
    fixed: str | None = None
    versions: list[str] = Field(default_factory=list)
    cves: list[str] = Field(min_length=1)
    severity: str = "high"
    summary: str = ""

    @field_validator("product")
    @classmethod
    def _product(cls, value: str) -> str:
        return value.lower()

    @field_validator("introduced", "fixed")
    @classmethod
    def _bound(cls, value: str | None) -> str | None:
        if value is not None:
            Version.parse(value)
        return value

    @field_validator("versions")
    @classmethod
    def _versions(cls, values: list[str]) -> list[str]:
        for value in values:
            Version.parse(value)
        return values

    @field_validator("cves")
    @classmethod
    def _cves(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not CVE_ID.match(v)]
        if bad:
            raise ValueError(f"not a CVE id: {', '.join(bad)} (expected CVE-YYYY-NNNN)")
        return values

    @field_validator("severity")
    @classmethod
    def _severity(cls, value: str) -> str:
        if value not in ("low", "medium", "high", "critical"):
            raise ValueError(f"severity '{value}' is not one of low, medium, high, critical")
        return value

    @model_validator(mode="after")
    def _affected(self) -> Entry:
        if not self.versions and self.fixed is None:
            raise ValueError("give the affected versions: 'fixed' (with optional 'introduced') or 'versions'")
        if self.introduced and self.fixed and not Version.parse(self.introduced) < Version.parse(self.fixed):
            raise ValueError(f"'introduced' {self.introduced} is not below 'fixed' {self.fixed}")
        return self

    def affects(self, version: Version) -> bool:
        if any(Version.parse(v) == version for v in self.versions):
            return True
        if self.fixed is None:
            return False
        low = Version.parse(self.introduced) if self.introduced else None
        return (low is None or low <= version) and version < Version.parse(self.fixed)


class _CatalogueFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    entries: list[Entry]


@dataclass(frozen=True, slots=True)
class Catalogue:
    source: str
    entries: tuple[Entry, ...]

    def match(self, product: str | None, version: str | None) -> list[dict[str, Any]]:
        """Entries affecting `product` at `version`, as small dicts for observation data."""
        if not product or not version:
            return []
        try:
            parsed = Version.parse(version)
        except ValueError:
            return []
        hits = [e for e in self.entries if e.product == product.lower() and e.affects(parsed)]
        return [
            {"product": e.product, "version": version, "cves": list(e.cves), "severity": e.severity}
            for e in hits[:MAX_MATCHES]
        ]


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Load and validate the catalogue; every mistake is an InputError as FILE:LINE: message."""
    file = path or default_catalogue_path()
    data = load_yaml_file(file)
    if not isinstance(data, dict):
        raise InputError([Problem(str(file), 1, "the vulnerable-versions file must be a mapping with 'entries:'")])
    try:
        parsed = _CatalogueFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, data, str(file))) from None
    problems = []
    seen: dict[str, int] = {}
    lines: list[int] = getattr(data["entries"], "item_lines", [])
    for index, entry in enumerate(parsed.entries):
        key = entry.model_dump_json()
        if key in seen:
            line = lines[index] if index < len(lines) else None
            problems.append(Problem(str(file), line, f"entry {index + 1} repeats entry {seen[key] + 1}"))
        seen.setdefault(key, index)
    if problems:
        raise InputError(problems)
    return Catalogue(str(file), tuple(parsed.entries))
