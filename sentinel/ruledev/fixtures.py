"""Rule fixtures (`rules/tests/<rule_id>.yaml`, format in docs/contracts.md) and the runner behind
`sentinel rules test`.

A case feeds observations to one rule and states the expected outcome: `present`, `absent` or `unknown`
(no verdict). Rules with memory take `sweeps:`, a sequence of steps, each with its own observations and
expectation, run through the same `AnomalyEngine` as production with a fake clock. Traffic rules give a
capture (`pcap:`) that `sentinel.traffic.analyze.observations_from_pcap` turns into observations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sentinel.engine.anomaly import AnomalyEngine
from sentinel.engine.rule import Rule
from sentinel.engine.ruleset import RuleSet, Verdict
from sentinel.engine.stateful import FLAPPING_SUFFIX
from sentinel.engine.stateful_spec import Duration
from sentinel.errors import InputError, Problem
from sentinel.models import Observation, ObservationStatus, Vantage
from sentinel.registry.loader import load_registry
from sentinel.registry.models import Endpoint, Owner, Registry, System, Tier
from sentinel.registry.scope import Scope
from sentinel.traffic.analyze import observations_from_pcap
from sentinel.yamlio import LineDict, load_yaml_file, validation_problems

Expect = Literal["present", "absent", "unknown"]
FIXTURE_SYSTEM = "fixture-system"
T0 = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
TEST_DIRS = {"tests", "fixtures"}  # folders of a rules tree that hold fixtures


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FixtureSystem(Strict):
    tier: Tier = Tier.CITY
    mlps_level: int = Field(default=3, ge=1, le=5)
    cii: bool = True
    tags: list[str] = Field(default_factory=lambda: ["e-gov"])
    district: str | None = None


class FixtureObservation(Strict):
    kind: str | None = None  # default: the rule's first observation kind
    target: str = "fixture-target"
    status: ObservationStatus = ObservationStatus.OK
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    system: str = FIXTURE_SYSTEM
    repeat: int = Field(default=1, ge=1, le=10_000)  # the same observation N times, `every` apart
    # who observed (what `Sentinel.ingest` stamps); unset, rules reading them cannot tell
    site: str | None = None
    vantage: Vantage | None = None


class Sweep(Strict):
    """One step of a stateful case: observations, then a tick at the step's time."""

    observation: FixtureObservation | None = None
    observations: list[FixtureObservation] = Field(default_factory=list)
    advance: Duration = timedelta(minutes=5)  # time since the previous step
    every: Duration = timedelta(minutes=1)  # spacing of repeated observations within the step
    repeat: int = Field(default=1, ge=1, le=1000)  # run this step N times
    expect: Expect | None = None  # checked after the (last) repetition
    expect_flapping: Expect | None = None

    def all_observations(self) -> list[FixtureObservation]:
        return ([self.observation] if self.observation else []) + list(self.observations)


class ExpectedFinding(Strict):
    rule_id: str
    target: str | None = None
    system_id: str | None = None


class Case(Strict):
    name: str = Field(min_length=1)
    expect: Expect | None = None
    system: FixtureSystem = Field(default_factory=FixtureSystem)
    observation: FixtureObservation | None = None
    sweeps: list[Sweep] | None = None
    pcap: str | None = None
    registry: str | dict[str, Any] | None = None
    expect_findings: list[ExpectedFinding] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Case:
        shapes = [n for n in ("observation", "sweeps", "pcap") if getattr(self, n) is not None]
        if len(shapes) != 1:
            raise ValueError("a case needs exactly one of 'observation', 'sweeps' or 'pcap'")
        if self.observation is not None and self.expect is None:
            raise ValueError("an 'observation' case needs 'expect: present | absent | unknown'")
        if self.pcap is not None and self.expect_findings is None:
            raise ValueError("a 'pcap' case needs 'expect_findings' (a list, empty for a negative capture)")
        if self.sweeps is not None and not any(s.expect or s.expect_flapping for s in self.sweeps):
            raise ValueError("a 'sweeps' case needs an 'expect' on at least one sweep")
        return self

    def polarity(self) -> set[str]:
        """Which outcomes the case checks (for the 'one present and one absent case' rule)."""
        if self.pcap is not None:
            return {"present" if self.expect_findings else "absent"}
        if self.sweeps is not None:
            return {s.expect for s in self.sweeps if s.expect}
        return {self.expect} if self.expect else set()


class FixtureFile(Strict):
    rule: str
    cases: list[Case] = Field(min_length=1)


@dataclass(frozen=True)
class LoadedFixture:
    path: Path
    fixture: FixtureFile
    lines: dict[int, int]  # case index → line


@dataclass(frozen=True)
class CaseResult:
    path: Path
    line: int | None
    rule_id: str
    case: str
    ok: bool
    message: str = ""
    error: bool = False  # could not run (as opposed to: ran and disagreed)


def fixture_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for root in paths:
        if root.is_file():
            continue
        if not root.is_dir():
            continue
        for p in sorted(root.rglob("*")):
            # rules/tests/<rule_id>.yaml; subfolders of tests/ hold captures and registries, not fixtures
            if p.suffix in (".yaml", ".yml") and p.is_file() and p.parent.name in TEST_DIRS:
                out.append(p)
    return out


def parse_fixture(path: Path) -> LoadedFixture:
    data = load_yaml_file(path)
    if not isinstance(data, dict):
        raise InputError([Problem(str(path), 1, "a fixture file must be a mapping with 'rule' and 'cases'")])
    try:
        fixture = FixtureFile.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, data, str(path))) from None
    lines: dict[int, int] = {}
    cases = data.get("cases")
    if isinstance(cases, list) and hasattr(cases, "item_lines"):
        lines = dict(enumerate(cases.item_lines))
    problems = []
    if fixture.rule != path.stem:
        line = data.key_lines.get("rule") if isinstance(data, LineDict) else None
        problems.append(Problem(str(path), line, f"fixture for '{fixture.rule}' must be named '{fixture.rule}.yaml'"))
    if problems:
        raise InputError(problems)
    return LoadedFixture(path, fixture, lines)


def load_fixtures(paths: list[Path]) -> tuple[list[LoadedFixture], list[Problem]]:
    loaded: list[LoadedFixture] = []
    problems: list[Problem] = []
    for file in fixture_files(paths):
        try:
            loaded.append(parse_fixture(file))
        except InputError as exc:
            problems.extend(exc.problems)
    return loaded, problems


def fixture_registry(spec: FixtureSystem, system_ids: set[str]) -> Registry:
    systems = tuple(
        System(
            id=sid,
            name=sid,
            owner=Owner(department="fixtures"),
            tier=spec.tier,
            mlps_level=spec.mlps_level,
            cii=spec.cii,
            endpoints=[Endpoint(host="fixture.invalid")],
            tags=spec.tags,
            district=spec.district,
        )
        for sid in sorted(system_ids)
    )
    return Registry(scope=Scope(allow=[]), systems=systems)


def _observation(rule: Rule, spec: FixtureObservation, at: datetime) -> Observation:
    return Observation(
        kind=spec.kind or rule.observation[0],
        system_id=spec.system,
        target=spec.target,
        observed_at=at,
        probe="fixture",
        status=spec.status,
        data=dict(spec.data),
        error=spec.error,
        site=spec.site,
        vantage=spec.vantage,
    )


def _outcome(verdicts: list[Verdict], rule_id: str) -> str:
    mine = [v for v in verdicts if v.rule.id == rule_id]
    if not mine:
        return "unknown"
    return "present" if any(v.present for v in mine) else "absent"


PcapReader = Callable[[Path, Registry], list[Observation]]


class FixtureRunner:
    """Runs fixture cases through the production engine. `read_pcap` turns a capture into observations
    (None: capture cases cannot run and are reported as errors)."""

    def __init__(
        self, rules: list[Rule], all_rules: RuleSet | None = None, read_pcap: PcapReader | None = observations_from_pcap
    ) -> None:
        self.by_id = {r.id: r for r in rules}
        self.all_rules = all_rules or RuleSet(rules)
        self.read_pcap = read_pcap

    def run(self, loaded: LoadedFixture) -> list[CaseResult]:
        fixture = loaded.fixture
        rule = self.by_id.get(fixture.rule)
        if rule is None:
            return [CaseResult(loaded.path, 1, fixture.rule, "*", False, f"no rule '{fixture.rule}' is loaded", True)]
        results = []
        for index, case in enumerate(fixture.cases):
            line = loaded.lines.get(index)
            try:
                ok, message, error = self._run_case(rule, case, loaded.path.parent)
            except InputError as exc:
                ok, message, error = False, "; ".join(str(p) for p in exc.problems), True
            results.append(CaseResult(loaded.path, line, rule.id, case.name, ok, message, error))
        return results

    def _run_case(self, rule: Rule, case: Case, base: Path) -> tuple[bool, str, bool]:
        if case.pcap is not None:
            return self._run_pcap(case, base)
        steps = case.sweeps or [Sweep(observation=case.observation, expect=case.expect, advance=timedelta(0))]
        ids = {o.system for s in steps for o in s.all_observations()} | {FIXTURE_SYSTEM}
        engine = AnomalyEngine(RuleSet([rule]), fixture_registry(case.system, ids))
        now = T0
        verdicts: list[Verdict] = []
        for number, step in enumerate(steps, start=1):
            for _ in range(step.repeat):
                now += step.advance
                at = now
                batch: list[Observation] = []
                for spec in step.all_observations():
                    for _ in range(spec.repeat):
                        batch.append(_observation(rule, spec, at))
                        at += step.every
                verdicts = engine.evaluate(batch, max(at, now))
            for wanted, rule_id in ((step.expect, rule.id), (step.expect_flapping, rule.id + FLAPPING_SUFFIX)):
                if wanted is None:
                    continue
                got = _outcome(verdicts, rule_id)
                if got != wanted:
                    where = f"sweep {number}: " if case.sweeps else ""
                    return False, f"{where}expected {rule_id} {wanted}, got {got}", False
        return True, "", False

    def _run_pcap(self, case: Case, base: Path) -> tuple[bool, str, bool]:
        reader = self.read_pcap
        if reader is None:
            return False, "traffic analyser not available (sentinel.traffic.analyze.observations_from_pcap)", True
        assert case.pcap is not None and case.expect_findings is not None
        capture = base / case.pcap
        if not capture.is_file():
            return False, f"no capture file {capture}", True
        registry = self._registry(case, base)
        observations = reader(capture, registry)
        verdicts = AnomalyEngine(self.all_rules, registry).evaluate(observations, T0)
        present = [v for v in verdicts if v.present]
        for expected in case.expect_findings:
            if not any(
                v.rule.id == expected.rule_id
                and (expected.target is None or v.target == expected.target)
                and (expected.system_id is None or v.system_id == expected.system_id)
                for v in present
            ):
                return False, f"expected finding {expected.model_dump(exclude_none=True)} was not produced", False
        if not case.expect_findings:
            wanted_rules = {r for r in self.by_id}
            extra = [v for v in present if v.rule.id in wanted_rules]
            if extra:
                return False, f"negative capture produced {extra[0].rule.id} on {extra[0].target}", False
        return True, "", False

    @staticmethod
    def _registry(case: Case, base: Path) -> Registry:
        if isinstance(case.registry, str):
            return load_registry(base / case.registry)
        if isinstance(case.registry, dict):
            try:
                return Registry.model_validate(case.registry)
            except ValidationError as exc:
                raise InputError([Problem("registry", None, str(exc))]) from None
        return fixture_registry(case.system, {FIXTURE_SYSTEM})
