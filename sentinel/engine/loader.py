"""Load rule files (one rule per YAML file, id = file name) and report every problem at once."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from sentinel.engine.rule import Rule
from sentinel.errors import InputError, Problem
from sentinel.yamlio import LineDict, load_yaml_file, parse_files, validation_problems

#: Folders under a rules tree that hold fixtures, framework mappings and data files, not rules.
FIXTURE_DIRS = {"tests", "fixtures", "frameworks", "data"}


def rule_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError([Problem(str(path), None, "no such rules file or folder")])
    return sorted(
        p
        for p in path.rglob("*")
        if p.suffix in (".yaml", ".yml") and p.is_file() and not FIXTURE_DIRS & set(p.relative_to(path).parts[:-1])
    )


def parse_rule_file(file: Path) -> Rule:
    data = load_yaml_file(file)
    if not isinstance(data, dict):
        raise InputError([Problem(str(file), 1, "a rule file must be a mapping")])
    problems: list[Problem] = []
    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, data, str(file))) from None
    except ValueError as exc:  # condition compilation (depth limit)
        raise InputError([Problem(str(file), 1, str(exc))]) from None
    if rule.id != file.stem:
        line = data.key_lines.get("id") if isinstance(data, LineDict) else None
        problems.append(Problem(str(file), line, f"rule id '{rule.id}' must equal the file name '{file.stem}'"))
    if problems:
        raise InputError(problems)
    return rule


def load_rules(paths: list[Path]) -> list[Rule]:
    """Every rule under the given files/folders, or an InputError listing every problem."""
    parsed, problems = parse_files(paths, rule_files, parse_rule_file)
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for file, rule in parsed:
        if rule.id in seen:
            problems.append(Problem(str(file), 1, f"duplicate rule id '{rule.id}' (also in {seen[rule.id]})"))
            continue
        seen[rule.id] = str(file)
        rules.append(rule)
    if problems:
        raise InputError(problems)
    return rules
