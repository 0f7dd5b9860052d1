"""Load a registry from a YAML file or a folder of them, reporting every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sentinel.errors import InputError, Problem
from sentinel.registry.models import Registry, System
from sentinel.registry.scope import Scope
from sentinel.yamlio import LineDict, LineList, load_yaml_file, load_yaml_text, validation_problems


class RegistryFile(BaseModel):
    """The shape of one registry file; a folder's files are merged."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope | None = None
    systems: list[System] = Field(default_factory=list)


def registry_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise InputError([Problem(str(path), None, "folder holds no .yaml or .yml registry files")])
        return files
    if not path.exists():
        raise InputError([Problem(str(path), None, "no such file or folder")])
    return [path]


def _parse(data: Any, filename: str) -> tuple[RegistryFile | None, list[Problem]]:
    if data is None:
        return RegistryFile(), []
    if not isinstance(data, dict):
        return None, [
            Problem(
                filename, getattr(data, "line", 1) or 1, "a registry file must be a mapping with 'scope' and 'systems'"
            )
        ]
    try:
        return RegistryFile.model_validate(data), []
    except ValidationError as exc:
        return None, validation_problems(exc, data, filename)


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


def build_registry(parsed: list[tuple[str, Any]]) -> Registry:
    """Validate parsed YAML documents (filename, data) into one Registry, or raise every problem."""
    problems: list[Problem] = []
    files: list[tuple[str, Any, RegistryFile]] = []
    for filename, data in parsed:
        model, errs = _parse(data, filename)
        problems.extend(errs)
        if model is not None:
            files.append((filename, data, model))

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
            if system.id in seen:
                first_file, first_line = seen[system.id]
                problems.append(
                    Problem(
                        filename,
                        line,
                        f"duplicate system id '{system.id}' (first defined at {first_file}:{first_line})",
                    )
                )
                continue
            seen[system.id] = (filename, line)
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


def load_registry(path: Path) -> Registry:
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
            build_registry(parsed) if parsed else None
        except InputError as exc:
            problems.extend(p for p in exc.problems if "no 'scope.allow'" not in p.message)
        raise InputError(problems)
    return build_registry(parsed)


def load_registry_text(text: str, filename: str = "<registry>") -> Registry:
    return build_registry([(filename, load_yaml_text(text, filename))])
