"""The rule schema: metadata (what), condition (how), control references (why it matters)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from sentinel.engine.conditions import Compiled, Condition, compile_condition
from sentinel.models import Observation, Severity
from sentinel.registry.models import System, Tier

RULE_ID = re.compile(r"^[a-z][a-z0-9_]{2,79}$")
CATEGORIES = (
    "availability",
    "exposure",
    "crypto",
    "compliance",
    "integrity",
    "threat",
    "configuration",
    "dns",
    "scope",
)


class AppliesTo(BaseModel):
    """Which registered systems a rule is evaluated for; every given key must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tier: list[Tier] | None = None
    mlps_level: list[int] | None = None
    min_mlps_level: int | None = Field(default=None, ge=1, le=5)
    cii: bool | None = None
    tags: list[str] | None = None  # the system must carry at least one of these

    def matches(self, system: System) -> bool:
        if self.tier is not None and system.tier not in self.tier:
            return False
        if self.mlps_level is not None and system.mlps_level not in self.mlps_level:
            return False
        if self.min_mlps_level is not None and system.mlps_level < self.min_mlps_level:
            return False
        if self.cii is not None and system.cii != self.cii:
            return False
        return not (self.tags is not None and not set(self.tags) & set(system.tags))


class Controls(BaseModel):
    """References into control frameworks: clause ids per framework."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mlps: list[str] = Field(default_factory=list)
    gov_web: list[str] = Field(default_factory=list)
    nist_800_53: list[str] = Field(default_factory=list)
    cis_v8: list[str] = Field(default_factory=list)

    def flat(self) -> list[str]:
        prefixes = (
            ("mlps", self.mlps),
            ("gov_web", self.gov_web),
            ("nist_800_53", self.nist_800_53),
            ("cis_v8", self.cis_v8),
        )
        return [f"{name}:{ref}" for name, refs in prefixes for ref in refs]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str = Field(min_length=3)
    description: str = ""
    severity: Severity
    category: str
    observation: list[str] = Field(min_length=1)
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    condition: Condition
    evidence: list[str] = Field(default_factory=list)
    controls: Controls = Field(default_factory=Controls)
    remediation: str = Field(min_length=3)
    references: list[str] = Field(default_factory=list)
    enabled: bool = True

    _compiled: Compiled = PrivateAttr()
    _evidence_fields: tuple[str, ...] = PrivateAttr()

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not RULE_ID.match(value):
            raise ValueError(f"'{value}' is not a valid rule id (lowercase snake_case, 3-80 characters)")
        return value

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        if value not in CATEGORIES:
            raise ValueError(f"unknown category '{value}' (one of: {', '.join(CATEGORIES)})")
        return value

    @field_validator("observation", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def model_post_init(self, _context: Any) -> None:
        self._compiled = compile_condition(self.condition)
        fields = sorted(self.condition.fields() - {"status", "kind", "probe", "system_id"})
        self._evidence_fields = tuple(dict.fromkeys([*fields, *self.evidence]))

    def evaluate(self, obs: Observation) -> bool | None:
        """True: the problem is present; False: checked and absent; None: could not tell."""
        return self._compiled(obs.get)

    def evidence_of(self, obs: Observation) -> dict[str, Any]:
        ev: dict[str, Any] = {"observed_at": obs.observed_at.isoformat(), "probe": obs.probe}
        for name in self._evidence_fields:
            value = obs.get(name)
            if value is not None:
                ev[name] = value
        return ev
