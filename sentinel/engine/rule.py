"""The rule schema: metadata (what), condition (how), control references (why it matters)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from sentinel.engine.conditions import Compiled, Condition, Getter, compile_condition
from sentinel.engine.stateful_spec import STATEFUL_KEYS, Absence, Baseline, Change, Flapping, Window
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


def check_category(value: str) -> str:
    if value not in CATEGORIES:
        raise ValueError(f"unknown category '{value}' (one of: {', '.join(CATEGORIES)})")
    return value


def kinds_list(value: Any) -> Any:
    """`observation: tls` and `observation: [tls, port]` alike."""
    return [value] if isinstance(value, str) else value


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

    @staticmethod
    def signature(system: System) -> tuple[object, ...]:
        """Everything `matches` reads of a system: systems with equal signatures get the same rules."""
        return system.tier, system.mlps_level, system.cii, frozenset(system.tags)


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
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str
    title: str = Field(min_length=3)
    #: Chinese title and remediation (reports, notifications and the web view in zh). Optional in the schema;
    #: `sentinel rules lint` requires them of shipped rules (docs/rules.md, "Chinese text").
    title_zh: str = ""
    description: str = ""
    severity: Severity
    category: str
    observation: list[str] = Field(min_length=1)
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    # Preconditions: while `when` is not true (false, or unknown) the rule cannot tell, so it gives no
    # verdict and an open finding stays as it is. `condition` then says whether the problem is there.
    when: Condition | None = None
    condition: Condition | None = None
    evidence: list[str] = Field(default_factory=list)
    controls: Controls = Field(default_factory=Controls)
    remediation: str = Field(min_length=3)
    remediation_zh: str = ""
    references: list[str] = Field(default_factory=list)
    enabled: bool = True
    # Stateful extensions (docs/rules.md, "Rules with memory"); evaluated by sentinel.engine.stateful.
    for_: int = Field(default=1, alias="for", ge=1, le=10_000)
    clear_after: int = Field(default=1, ge=1, le=10_000)
    flapping: Flapping | None = None
    change: Change | None = None
    baseline: Baseline | None = None
    window: Window | None = None
    absence: Absence | None = None

    _compiled: Compiled = PrivateAttr()
    _guard: Compiled | None = PrivateAttr()
    _evidence_fields: tuple[str, ...] = PrivateAttr()

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not RULE_ID.match(value):
            raise ValueError(f"'{value}' is not a valid rule id (lowercase snake_case, 3-80 characters)")
        return value

    @field_validator("title_zh", "remediation_zh")
    @classmethod
    def _zh(cls, value: str) -> str:
        return zh_text(value)

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        return check_category(value)

    @field_validator("observation", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        return kinds_list(value)

    @model_validator(mode="after")
    def _shape(self) -> Rule:
        features = [k for k in STATEFUL_KEYS if getattr(self, k) is not None]
        if len(features) > 1:
            raise ValueError(
                f"a rule takes at most one of change, baseline, window, absence (got {', '.join(features)})"
            )
        if self.condition is None and self.absence is None:
            raise ValueError("condition: Field required (only an 'absence' rule may omit it)")
        if self.absence is not None and (self.condition is not None or self.for_ > 1 or self.clear_after > 1):
            raise ValueError("an 'absence' rule takes no 'condition', 'for' or 'clear_after' (use 'absence.after')")
        if self.flapping is not None and len(self.id) > 71:
            raise ValueError("id: a rule with 'flapping' needs an id of at most 71 characters (for '<id>_flapping')")
        if self.window is not None and (self.for_ > 1 or self.clear_after > 1):
            raise ValueError("a 'window' rule takes no 'for' or 'clear_after': the window already smooths it")
        if self.when is not None:
            if self.absence is not None:
                raise ValueError("an 'absence' rule takes no 'when' (it has no condition to guard)")
            derived = sorted(f for f in self.when.fields() if f.split(".", 1)[0] in DERIVED_PREFIXES)
            if derived:
                raise ValueError(
                    f"when: reads derived field(s) {', '.join(derived)}; 'when' is checked on the observation before "
                    "the rule's memory is updated (put conditions on derived fields in 'condition')"
                )
        return self

    def model_post_init(self, _context: Any) -> None:
        cond = self.condition
        compiled = compile_condition(cond) if cond is not None else _never
        self._guard = compile_condition(self.when) if self.when is not None else None
        self._compiled = compiled if self._guard is None else _guarded(self._guard, compiled)
        read = (cond.fields() if cond else set()) | (self.when.fields() if self.when else set())
        fields = sorted(read - {"status", "kind", "probe", "system_id"})
        for feature in (self.change, self.baseline):
            if feature is not None:
                fields.append(feature.field)
        self._evidence_fields = tuple(dict.fromkeys([*fields, *self.evidence]))

    @property
    def compiled(self) -> Compiled:
        """The condition as a closure over a field getter (read once when indexing: private attrs are slow)."""
        return self._compiled

    @property
    def guard(self) -> Compiled | None:
        """The compiled `when` alone (None: no precondition); `compiled` already includes it."""
        return self._guard

    @property
    def evidence_fields(self) -> tuple[str, ...]:
        return self._evidence_fields

    @property
    def stateful(self) -> bool:
        """Needs memory across sweeps (and so the anomaly engine, not a one-shot evaluation)."""
        return (
            self.for_ > 1
            or self.clear_after > 1
            or self.flapping is not None
            or any(getattr(self, k) is not None for k in STATEFUL_KEYS)
        )

    def fields_read(self) -> set[str]:
        """Every observation field the rule reads (condition and stateful features)."""
        out = self.condition.fields() if self.condition is not None else set()
        if self.when is not None:
            out |= self.when.fields()
        for feature in (self.change, self.baseline):
            if feature is not None:
                out.add(feature.field)
        if self.change is not None:
            out.update(self.change.keep)
        return out

    def evaluate(self, obs: Observation) -> bool | None:
        """True: the problem is present; False: checked and absent; None: could not tell."""
        return self._compiled(obs.get)


#: CJK ideographs and CJK/full-width punctuation: no space belongs between two of them in Chinese text.
CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
_CJK_GAP = re.compile(f"(?<=[{CJK}]) (?=[{CJK}])")


def zh_text(text: str) -> str:
    """Chinese text with whitespace collapsed and no space between two CJK characters, so a folded YAML block
    (which joins its lines with a space) can wrap Chinese anywhere; spaces next to Latin words stay."""
    return _CJK_GAP.sub("", " ".join(text.split()))


def _never(_get: Getter) -> bool | None:
    return None


#: Derived fields (written by the rule's memory) that only `condition` may read.
DERIVED_PREFIXES = frozenset({"change", "baseline", "window", "flapping"})


def _guarded(guard: Compiled, condition: Compiled) -> Compiled:
    """The condition, asked only when the precondition holds: otherwise unknown (no verdict)."""

    def guarded(get: Getter) -> bool | None:
        return condition(get) if guard(get) is True else None

    return guarded
