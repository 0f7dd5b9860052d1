"""`sentinel rules lint`: every problem in every rule and fixture file at once, plus cross-rule checks.

Cross-rule checks: duplicate ids (including the `<id>_flapping` companions), control ids that no framework
file defines, rules without a fixture, fixtures without a positive and a negative case, fixtures for rules
that do not exist. Per rule: a precondition (the target answered, the scheme, a non-error status) buried in
the condition's top-level `all`, where failing it would read as "fixed" and resolve findings; it belongs in
`when:`; the Chinese title and remediation (`title_zh`, `remediation_zh`): required of shipped rules (a
problem), a warning for other rules, and always Chinese text without Markdown markup when given; an
`observation:` kind that no built-in probe or traffic detector produces (the rule would never fire; the kinds
come from `sentinel.ruledev.kinds`); a field the rule reads (`field:`, `value_field:`, `change.field`/`keep`/`diff`,
`baseline.field`, `evidence`) that no producer declares for the rule's kinds, and that is neither an attribute of every
observation (`status`, `target`...) nor derived by the rule's own memory (`change.*` with `change:`...): it would
always be missing, so the rule could never tell.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from sentinel.compliance.frameworks import Framework, known_control_ids, load_frameworks
from sentinel.engine.conditions import Condition
from sentinel.engine.loader import rule_files
from sentinel.engine.rule import CJK, DERIVED_PREFIXES, Rule
from sentinel.engine.stateful import FLAPPING_SUFFIX
from sentinel.errors import InputError, Problem
from sentinel.paths import shipped_rules_dir
from sentinel.ruledev.fixtures import LoadedFixture, load_fixtures, parse_fixture
from sentinel.ruledev.kinds import ATTRIBUTE_FIELDS, declared_fields, observation_kinds
from sentinel.yamlio import LineDict, line_of, load_yaml_file, validation_problems

NAMESPACES = ("mlps", "gov_web", "nist_800_53", "cis_v8")

#: The Chinese text every shipped rule must carry (docs/rules.md, "Chinese text").
ZH_FIELDS = ("title_zh", "remediation_zh")
#: Shipped rules whose Chinese text is still being written: a warning, not a problem, until it is there.
#: Remove an id once its rule has the text (tests/test_ruledev_lint_rules.py fails while a listed rule already has it).
ZH_PENDING: frozenset[str] = frozenset()
_HAS_CJK = re.compile(f"[{CJK}]")
_MARKUP = re.compile(r"`|\*\*|__")


@dataclass
class LintReport:
    rules: list[Rule] = field(default_factory=list)
    fixtures: list[LoadedFixture] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: what a third-party rule should still fix but may ship without (a missing Chinese text)
    warnings: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class _Parsed:
    file: Path
    data: LineDict
    rule: Rule


def _parse(file: Path, problems: list[Problem]) -> _Parsed | None:
    try:
        data = load_yaml_file(file)
    except InputError as exc:
        problems.extend(exc.problems)
        return None
    if not isinstance(data, LineDict):
        problems.append(Problem(str(file), 1, "a rule file must be a mapping"))
        return None
    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, data, str(file)))
        return None
    except ValueError as exc:
        problems.append(Problem(str(file), 1, str(exc)))
        return None
    if rule.id != file.stem:
        problems.append(
            Problem(str(file), data.key_lines.get("id"), f"rule id '{rule.id}' must equal the file name '{file.stem}'")
        )
    return _Parsed(file, data, rule)


def _is_precondition(leaf: Condition) -> bool:
    """A leaf saying "the thing could be looked at" rather than "the problem is there"."""
    match leaf.field, leaf.op:
        case ("reachable", "eq"):
            return leaf.value is True
        case ("status", "eq"):
            return bool(leaf.value == "ok")
        case ("scheme" | "final_scheme", "eq" | "in"):
            return True
        case ("status_code", "lt" | "le"):
            return True
    return False


def precondition_problems(item: _Parsed) -> list[Problem]:
    cond = item.rule.condition
    if cond is None or cond.all_ is None:
        return []
    out = []
    for index, child in enumerate(cond.all_):
        if child.field is not None and _is_precondition(child):
            out.append(
                Problem(
                    str(item.file),
                    line_of(item.data, ("condition", "all", index)) or item.data.key_lines.get("condition"),
                    f"condition: '{child.field} {child.op} {child.value}' is a precondition inside 'all': when it "
                    "fails the condition reads false and resolves findings without evidence; move it to 'when:'",
                )
            )
    return out


def kind_problems(item: _Parsed, known: frozenset[str]) -> list[Problem]:
    """An `observation:` kind that nothing produces: the rule would silently never fire."""
    out = []
    for index, kind in enumerate(item.rule.observation):
        if kind in known:
            continue
        close = difflib.get_close_matches(kind, sorted(known), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known kinds: {', '.join(sorted(known))}"
        out.append(
            Problem(
                str(item.file),
                line_of(item.data, ("observation", index)) or item.data.key_lines.get("observation"),
                f"observation: no probe or traffic detector produces kind '{kind}' ({hint})",
            )
        )
    return out


def _field_refs(data: LineDict) -> list[tuple[str, int | None]]:
    """Each field the rule file reads, with the line of its key: condition and `when` trees, stateful features."""
    refs: list[tuple[str, int | None]] = []

    def walk(node: object) -> None:
        if isinstance(node, LineDict):
            for key in ("field", "value_field"):
                if isinstance(node.get(key), str):
                    refs.append((node[key], node.key_lines.get(key)))
            for key in ("all", "any", "not"):
                walk(node.get(key))
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(data.get("condition"))
    walk(data.get("when"))
    for feature, keys in (("change", ("field", "diff", "keep")), ("baseline", ("field",))):
        section = data.get(feature)
        if not isinstance(section, LineDict):
            continue
        for key in keys:
            value = section.get(key)
            names = value if isinstance(value, list) else [value]
            for index, name in enumerate(names):
                if isinstance(name, str):
                    at = (feature, key, index) if isinstance(value, list) else (feature, key)
                    refs.append((name, line_of(data, at)))
    evidence = data.get("evidence")
    if isinstance(evidence, list):  # shown with every finding: a misspelt one is always empty
        refs.extend((name, line_of(data, ("evidence", i))) for i, name in enumerate(evidence) if isinstance(name, str))
    return refs


def field_problems(item: _Parsed, declared: dict[str, frozenset[str]]) -> list[Problem]:
    """A field that no producer of the rule's kinds reports: the condition on it is always unknown."""
    rule = item.rule
    kinds = list(dict.fromkeys(rule.observation))
    if not kinds or any(k not in declared for k in kinds):
        return []  # an unknown kind is its own problem; a kind nothing declares cannot be checked
    reported = frozenset().union(*(declared[k] for k in kinds))
    derived = {p for p in DERIVED_PREFIXES if getattr(rule, p, None) is not None}
    out = []
    for name, line in _field_refs(item.data):
        if name in reported or name in ATTRIBUTE_FIELDS or name.split(".", 1)[0] in derived:
            continue
        prefix = name.split(".", 1)[0]
        close = difflib.get_close_matches(name, sorted(reported | ATTRIBUTE_FIELDS), n=1)
        if prefix in DERIVED_PREFIXES:
            hint = f" ('{prefix}.*' fields come from the rule's own '{prefix}:')"
        else:
            hint = f" (did you mean '{close[0]}'?)" if close else ""
        where = ", ".join(f"'{k}'" for k in kinds)
        out.append(
            Problem(
                str(item.file),
                line or item.data.key_lines.get("condition"),
                f"rule {rule.id} reads field '{name}', which no probe or traffic detector reports for "
                f"kind{'s' if len(kinds) > 1 else ''} {where}{hint}",
            )
        )
    return out


def is_shipped(file: Path) -> bool:
    """The file is one of Sentinel's own rules (under the shipped rules directory)."""
    return file.resolve().is_relative_to(shipped_rules_dir().resolve())


def zh_problems(item: _Parsed, required: bool) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) about the rule's Chinese text: missing is a problem when `required`, else a warning;
    given text must be Chinese and carry no Markdown markup (robots, mail and CSV show it as it is)."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    file = str(item.file)
    for name in ZH_FIELDS:
        value: str = getattr(item.rule, name)
        english = name.removesuffix("_zh")
        line = item.data.key_lines.get(name) or item.data.key_lines.get(english)
        if not value:
            message = f"{name}: missing: every rule needs its {english} in Chinese (reports, notifications, web view)"
            (problems if required else warnings).append(Problem(file, line, message))
        elif not _HAS_CJK.search(value):
            problems.append(Problem(file, line, f"{name}: is not Chinese text"))
        elif _MARKUP.search(value):
            problems.append(
                Problem(file, line, f"{name}: no Markdown markup (`, **, __): write commands and settings plainly")
            )
    return problems, warnings


def _fixture_for(rule_file: Path, rule_id: str, roots: list[Path]) -> Path | None:
    for base in [*roots, rule_file.parent, rule_file.parent.parent]:
        for folder in ("tests", "fixtures"):
            candidate = base / folder / f"{rule_id}.yaml"
            if candidate.is_file():
                return candidate
    return None


def lint(paths: list[Path], frameworks: list[Framework] | None = None, require_zh: bool | None = None) -> LintReport:
    """`require_zh`: a missing Chinese text is a problem (True), a warning (False), or, by default (None), a
    problem for the shipped rules (except `ZH_PENDING`) and a warning for any other rule."""
    report = LintReport()
    problems = report.problems
    parsed: list[_Parsed] = []
    roots = [p for p in paths if p.is_dir()]
    for root in paths:
        try:
            files = rule_files(root)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        for file in files:
            item = _parse(file, problems)
            if item is not None:
                parsed.append(item)

    seen: dict[str, Path] = {}
    for item in parsed:
        rid = item.rule.id
        if rid in seen:
            problems.append(
                Problem(
                    str(item.file), item.data.key_lines.get("id"), f"duplicate rule id '{rid}' (also in {seen[rid]})"
                )
            )
            continue
        seen[rid] = item.file
        report.rules.append(item.rule)
    kinds = observation_kinds() if parsed else frozenset()
    fields = declared_fields() if parsed else {}
    for item in parsed:
        problems.extend(precondition_problems(item))
        problems.extend(kind_problems(item, kinds))
        problems.extend(field_problems(item, fields))
        required = require_zh if require_zh is not None else is_shipped(item.file) and item.rule.id not in ZH_PENDING
        zh, zh_warnings = zh_problems(item, required)
        problems.extend(zh)
        report.warnings.extend(zh_warnings)
        companion = item.rule.id + FLAPPING_SUFFIX
        if item.rule.flapping is not None and companion in seen:
            problems.append(
                Problem(
                    str(item.file), item.data.key_lines.get("flapping"), f"'{companion}' is taken by {seen[companion]}"
                )
            )

    if frameworks is None:
        try:
            frameworks = load_frameworks([r / "frameworks" for r in roots if (r / "frameworks").is_dir()] or None)
        except InputError as exc:
            problems.extend(exc.problems)
            frameworks = []
    known = known_control_ids(frameworks)
    for item in parsed:
        for ns in NAMESPACES:
            ids = known.get(ns)
            for index, ref in enumerate(getattr(item.rule.controls, ns)):
                if ids is None:
                    message = f"controls.{ns}: no framework file defines the '{ns}' namespace"
                elif ref not in ids:
                    message = f"controls.{ns}: '{ref}' is not a control of any '{ns}' framework file"
                else:
                    continue
                problems.append(Problem(str(item.file), line_of(item.data, ("controls", ns, index)), message))

    fixtures, fixture_problems = load_fixtures(roots)
    problems.extend(fixture_problems)
    extra_files = {_fixture_for(i.file, i.rule.id, roots) for i in parsed} - {f.path for f in fixtures} - {None}
    for extra in sorted(p for p in extra_files if p is not None):
        try:
            fixtures.append(parse_fixture(extra))
        except InputError as exc:
            problems.extend(exc.problems)
    report.fixtures = fixtures
    by_rule = {f.fixture.rule: f for f in fixtures}
    for rule in report.rules:
        fx = by_rule.get(rule.id)
        if fx is None:
            message = f"rule '{rule.id}' has no fixture (tests/{rule.id}.yaml)"
            problems.append(Problem(str(seen[rule.id]), 1, message))
            continue
        polarity = set().union(*(c.polarity() for c in fx.fixture.cases))
        for wanted in ("present", "absent"):
            if wanted not in polarity:
                problems.append(Problem(str(fx.path), 1, f"fixture needs at least one '{wanted}' case"))
    for fx in fixtures:
        if fx.fixture.rule not in seen and roots:
            problems.append(Problem(str(fx.path), 1, f"fixture for unknown rule '{fx.fixture.rule}'"))
    problems.sort(key=lambda p: (p.file, p.line or 0, p.message))
    report.warnings.sort(key=lambda p: (p.file, p.line or 0, p.message))
    return report
