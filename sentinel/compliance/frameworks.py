"""Framework files (data, not code): requirements of a control framework and which rules evidence them.

`rules/frameworks/<framework>.yaml`:

    framework: mlps2-l3          # id
    title: ...
    namespace: mlps              # rules cite this framework's ids under `controls.<namespace>`
    applies_to: {mlps_level: [3]}
    requirements:
      - id: "8.1.4.4 b)"
        title: ...; text: <clause wording>; unit: L3-CES1-18
        coverage: F | P | I      # F: a network observation can establish non-conformity
        refs: ["8.1.4.4 b)"]     # further control ids (in this namespace) whose rules evidence it
        rules: [rule_id]         # explicit rule ids, in addition
        applies_to: {tags: [mail]}
        nist_800_53: [CM-7]; cis_v8: ["4.8"]   # cross-map

A requirement is evidenced by every rule that cites its id or one of its refs, plus its explicit rules:
many-to-many both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sentinel.engine.rule import AppliesTo, Rule
from sentinel.errors import InputError, Problem
from sentinel.paths import shipped_rules_dir
from sentinel.yamlio import load_yaml_file, parse_files, validation_problems

Namespace = Literal["mlps", "gov_web", "nist_800_53", "cis_v8"]
Coverage = Literal["F", "P", "I"]


class Requirement(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    text: str = ""
    unit: str | None = None
    coverage: Coverage
    refs: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    nist_800_53: list[str] = Field(default_factory=list)
    cis_v8: list[str] = Field(default_factory=list)
    note: str = ""

    @property
    def control_ids(self) -> list[str]:
        return [self.id, *self.refs]


class Framework(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    framework: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")
    title: str = Field(min_length=1)
    namespace: Namespace
    source: str = ""
    caveat: str = ""
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    requirements: list[Requirement] = Field(min_length=1)


def default_frameworks_dir() -> Path:
    return shipped_rules_dir() / "frameworks"


def framework_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError([Problem(str(path), None, "no such frameworks file or folder")])
    return sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def parse_framework_file(file: Path) -> Framework:
    data = load_yaml_file(file)
    if not isinstance(data, dict):
        raise InputError([Problem(str(file), 1, "a framework file must be a mapping")])
    try:
        fw = Framework.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, data, str(file))) from None
    ids = [r.id for r in fw.requirements]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise InputError([Problem(str(file), None, f"requirement '{dup}' is listed more than once") for dup in twice])
    return fw


def load_frameworks(paths: Iterable[Path] | None = None) -> list[Framework]:
    """Every framework under the given files/folders (default: the shipped ones); all problems at once."""
    parsed, problems = parse_files(list(paths or [default_frameworks_dir()]), framework_files, parse_framework_file)
    out: list[Framework] = []
    seen: dict[str, str] = {}
    for file, fw in parsed:
        if fw.framework in seen:
            problems.append(Problem(str(file), 1, f"duplicate framework '{fw.framework}' (also {seen[fw.framework]})"))
            continue
        seen[fw.framework] = str(file)
        out.append(fw)
    if problems:
        raise InputError(problems)
    return out


def known_control_ids(frameworks: Iterable[Framework]) -> dict[str, set[str]]:
    """namespace → every control id a rule may cite (requirement ids and their refs)."""
    out: dict[str, set[str]] = {}
    for fw in frameworks:
        ids = out.setdefault(fw.namespace, set())
        for req in fw.requirements:
            ids.update(req.control_ids)
    return out


def rule_controls(rule: Rule, namespace: str) -> list[str]:
    refs: list[str] = getattr(rule.controls, namespace)
    return refs


@dataclass(frozen=True)
class Mapping:
    """Requirement → rules, computed once from frameworks and loaded rules."""

    rules_by_requirement: dict[tuple[str, str], list[Rule]]

    @classmethod
    def build(cls, frameworks: Iterable[Framework], rules: Iterable[Rule]) -> Mapping:
        loaded = [r for r in rules if r.enabled]
        by_id = {r.id: r for r in loaded}
        out: dict[tuple[str, str], list[Rule]] = {}
        for fw in frameworks:
            cited: dict[str, list[Rule]] = {}
            for rule in loaded:
                for ref in rule_controls(rule, fw.namespace):
                    cited.setdefault(ref, []).append(rule)
            for req in fw.requirements:
                found: dict[str, Rule] = {}
                for cid in req.control_ids:
                    for rule in cited.get(cid, []):
                        found[rule.id] = rule
                for rid in req.rules:
                    if rid in by_id:
                        found[rid] = by_id[rid]
                out[(fw.framework, req.id)] = sorted(found.values(), key=lambda r: r.id)
        return cls(out)

    def rules_for(self, framework: str, requirement: str) -> list[Rule]:
        return self.rules_by_requirement.get((framework, requirement), [])
