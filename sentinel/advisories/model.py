"""What an early warning (预警通报) says: what to look for, how bad it is, and by when it must be fixed."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from sentinel.engine.conditions import Condition
from sentinel.engine.rule import Controls, Rule, check_category, kinds_list
from sentinel.models import Severity

#: a warning's rule id is this prefix and its id, so its findings say which warning they answer
ADVISORY_RULE_PREFIX = "advisory_"
#: warning ids as issuing authorities write them: "2026-017", "CNVD-2026-12345"
ADVISORY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
SITE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def rule_id_of(advisory_id: str) -> str:
    return ADVISORY_RULE_PREFIX + re.sub(r"[^a-z0-9]+", "_", advisory_id.lower()).strip("_")


def advisory_of_rule(rule_id: str) -> str | None:
    """The slug of the warning a rule id belongs to (None: an ordinary rule)."""
    return rule_id[len(ADVISORY_RULE_PREFIX) :] if rule_id.startswith(ADVISORY_RULE_PREFIX) else None


class Advisory(BaseModel):
    """One warning. `match` (and the optional precondition `when`) use the rule language of docs/rules.md."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    title: str = Field(min_length=3)
    title_zh: str = ""
    description: str = ""
    severity: Severity
    category: str = "threat"
    #: the site that issued it (the city, usually)
    issued_by: str
    issued_at: AwareDatetime
    #: when affected systems must be fixed and verified; after it, an unverified system is overdue
    deadline: AwareDatetime
    observation: list[str] = Field(min_length=1)
    when: Condition | None = None
    match: Condition
    evidence: list[str] = Field(default_factory=list)
    controls: Controls = Field(default_factory=Controls)
    remediation: str = Field(min_length=3)
    remediation_zh: str = ""
    references: list[str] = Field(default_factory=list)
    #: set when the issuer withdraws it (a false alarm): its rule stops, its open findings stay for the record
    withdrawn_at: AwareDatetime | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not ADVISORY_ID.match(value):
            raise ValueError(f"'{value}' is not a valid warning id (letters, digits, '.', '_' and '-', 1-63 long)")
        return value

    @field_validator("issued_by")
    @classmethod
    def _site(cls, value: str) -> str:
        if not SITE.match(value):
            raise ValueError(f"'{value}' is not a site name (lowercase letters, digits and '-')")
        return value

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        return check_category(value)

    @field_validator("observation", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        return kinds_list(value)

    @model_validator(mode="after")
    def _dates(self) -> Advisory:
        if self.deadline <= self.issued_at:
            raise ValueError("deadline: must be after issued_at")
        self.to_rule()  # the match must compile here, where the error can name the warning's file
        return self

    @property
    def rule_id(self) -> str:
        return rule_id_of(self.id)

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None

    def time_left(self, now: datetime) -> timedelta:
        return self.deadline - now

    def to_rule(self) -> Rule:
        """The rule every instance evaluates for this warning. Its description names the warning and its
        deadline, so a finding (and the owner's notice) carries both."""
        deadline = self.deadline.isoformat(timespec="minutes")
        zh = f"{self.remediation_zh.strip()}（整改时限 {deadline}）" if self.remediation_zh else ""
        return Rule.model_validate(
            {
                "id": self.rule_id,
                "title": f"[{self.id}] {self.title}",
                "title_zh": f"【预警通报 {self.id}】{self.title_zh}" if self.title_zh else "",
                "description": f"Early warning {self.id} issued by {self.issued_by}; fix by {deadline}. "
                + self.description,
                "severity": self.severity,
                "category": self.category,
                "observation": self.observation,
                "when": self.when,
                "condition": self.match,
                "evidence": self.evidence,
                "controls": self.controls.model_dump(),
                "remediation": f"{self.remediation.strip()} (deadline {deadline})",
                "remediation_zh": zh,
                "references": self.references,
            }
        )
