"""Load a registry from a YAML file or a folder of them, reporting every problem at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from sentinel.errors import InputError, Problem
from sentinel.registry.models import Registry, System
from sentinel.registry.scope import WIDEST_IPV4, WIDEST_IPV6, Scope
from sentinel.yamlio import LineDict, LineList, line_of, load_yaml_file, load_yaml_text, validation_problems


class RegistryHead(BaseModel):
    """The top-level keys of one registry file besides `systems` (validated one system at a time)."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope | None = None


def registry_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise InputError([Problem(str(path), None, "folder holds no .yaml or .yml registry files")])
        return files
    if not path.exists():
        raise InputError([Problem(str(path), None, "no such file or folder")])
    return [path]


@dataclass(frozen=True)
class ParsedFile:
    """A file as far as it validated: each system in its place, None where it was invalid."""

    scope: Scope | None = None
    systems: tuple[System | None, ...] = ()


def _parse(data: Any, filename: str) -> tuple[ParsedFile | None, list[Problem]]:
    """Validate one file. Systems are validated one by one, so a bad system hides neither the good ones
    (their scope and duplicate checks still run) nor its own other problems."""
    if data is None:
        return ParsedFile(), []
    if not isinstance(data, dict):
        return None, [
            Problem(
                filename, getattr(data, "line", 1) or 1, "a registry file must be a mapping with 'scope' and 'systems'"
            )
        ]
    problems: list[Problem] = []
    raw_systems = data.get("systems")
    try:
        head = RegistryHead.model_validate({k: v for k, v in data.items() if k != "systems"})
    except ValidationError as exc:
        problems.extend(validation_problems(exc, data, filename))
        head = RegistryHead()
    if raw_systems is None:
        return ParsedFile(head.scope), problems
    if not isinstance(raw_systems, list):
        line = data.key_lines.get("systems") if isinstance(data, LineDict) else None
        return None, [*problems, Problem(filename, line, "systems: must be a list of systems")]
    systems: list[System | None] = []
    for i, item in enumerate(raw_systems):
        try:
            systems.append(System.model_validate(item))
        except ValidationError as exc:
            item_line = _system_line(data, i)
            for problem in validation_problems(exc, item, filename, prefix=("systems", i)):
                problems.append(Problem(problem.file, problem.line or item_line, problem.message))
            systems.append(None)
    return ParsedFile(head.scope, tuple(systems)), problems


def _system_line(data: Any, index: int) -> int | None:
    systems = data.get("systems") if isinstance(data, LineDict) else None
    if isinstance(systems, LineList) and index < len(systems):
        return systems.item_lines[index]
    return None


def _endpoint_line(data: Any, sys_index: int, ep_index: int) -> int | None:
    try:
        endpoints = data["systems"][sys_index]["endpoints"]
    except (KeyError, IndexError, TypeError):
        return _system_line(data, sys_index)
    if isinstance(endpoints, LineList) and ep_index < len(endpoints):
        return endpoints.item_lines[ep_index]
    return _system_line(data, sys_index)


def _raw_id(data: Any, index: int) -> str | None:
    try:
        value = data["systems"][index]["id"]
    except (KeyError, IndexError, TypeError):
        return None
    return value.strip() if isinstance(value, str) else None


def build_registry(
    parsed: list[tuple[str, Any]], widest_v4: int = WIDEST_IPV4, widest_v6: int = WIDEST_IPV6
) -> Registry:
    """Validate parsed YAML documents (filename, data) into one Registry, or raise every problem.

    A scope entry wider than /`widest_v4` (IPv4), /`widest_v6` (IPv6) or a whole top-level domain is refused
    unless the same file's scope says `allow_wide: true`."""
    problems: list[Problem] = []
    files: list[tuple[str, Any, ParsedFile]] = []
    for filename, data in parsed:
        model, errs = _parse(data, filename)
        problems.extend(errs)
        if model is not None:
            files.append((filename, data, model))
            if model.scope is not None:
                for index, why in model.scope.too_wide(widest_v4, widest_v6):
                    problems.append(
                        Problem(
                            filename,
                            line_of(data, ("scope", "allow", index)),
                            f"scope.allow: {why}; narrow it, or set 'allow_wide: true' under 'scope' if you mean it",
                        )
                    )

    scope = Scope()
    for _, _, model in files:
        if model.scope is not None:
            scope = scope.merged(model.scope)
    if not problems and not scope.allow:
        problems.append(
            Problem(
                parsed[0][0] if parsed else "registry",
                1,
                "no 'scope.allow' entries: Sentinel probes nothing outside a declared scope",
            )
        )

    seen: dict[str, tuple[str, int | None]] = {}
    systems: list[System] = []
    for filename, data, model in files:
        for i, system in enumerate(model.systems):
            line = _system_line(data, i)
            # an invalid system still claims its id, so a duplicate is reported with the other problems
            sid = system.id if system is not None else _raw_id(data, i)
            if sid is not None and sid in seen:
                first_file, first_line = seen[sid]
                problems.append(
                    Problem(filename, line, f"duplicate system id '{sid}' (first defined at {first_file}:{first_line})")
                )
                continue
            if sid is not None:
                seen[sid] = (filename, line)
            if system is None:
                continue
            systems.append(system)
            if scope.allow:
                for j, endpoint in enumerate(system.endpoints):
                    if not scope.allows_host(endpoint.hostname):
                        problems.append(
                            Problem(
                                filename,
                                _endpoint_line(data, i, j),
                                f"system '{system.id}': endpoint host '{endpoint.hostname}' is outside the declared scope",  # noqa: E501
                            )
                        )
    if problems:
        raise InputError(problems)
    return Registry(scope=scope, systems=tuple(systems), sources=tuple(f for f, _ in parsed))


def load_registry(path: Path, widest_v4: int = WIDEST_IPV4, widest_v6: int = WIDEST_IPV6) -> Registry:
    """Load and validate a registry file or folder."""
    problems: list[Problem] = []
    parsed: list[tuple[str, Any]] = []
    for file in registry_files(path):
        try:
            parsed.append((str(file), load_yaml_file(file)))
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        # Still validate what did parse, so the user sees every error in one run.
        try:
            build_registry(parsed, widest_v4, widest_v6) if parsed else None
        except InputError as exc:
            problems.extend(p for p in exc.problems if "no 'scope.allow'" not in p.message)
        raise InputError(problems)
    return build_registry(parsed, widest_v4, widest_v6)


def load_registry_text(text: str, filename: str = "<registry>") -> Registry:
    return build_registry([(filename, load_yaml_text(text, filename))])
