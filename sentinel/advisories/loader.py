"""Reading warnings from YAML files, with every problem reported as FILE:LINE."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from sentinel.advisories.model import Advisory
from sentinel.errors import InputError, Problem
from sentinel.yamlio import load_yaml_file, validation_problems


def parse_advisory_file(file: Path) -> Advisory:
    if not file.is_file():
        raise InputError([Problem(str(file), None, "no such warning file")])
    data = load_yaml_file(file)
    if not isinstance(data, dict):
        raise InputError([Problem(str(file), 1, "a warning file must be a mapping (id, title, severity, match, ...)")])
    try:
        return Advisory.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, data, str(file))) from None
    except ValueError as exc:  # the match compiled into a rule (depth limit, refused regex)
        raise InputError([Problem(str(file), 1, str(exc))]) from None
