"""Sinks fed from the store. To add one: a module with a class that has `name`, `publish`, `close`,
listed in `BUILTIN_SINKS`; users enable it under `sinks: {NAME: {...options}}` in sentinel.yaml."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from sentinel.errors import InputError, Problem
from sentinel.sinks.alertmanager import AlertmanagerSink
from sentinel.sinks.base import Sink, SweepOutcome
from sentinel.sinks.jsonl import JsonLinesSink

BUILTIN_SINKS: dict[str, Callable[[dict[str, Any]], Sink]] = {"jsonl": JsonLinesSink, "alertmanager": AlertmanagerSink}


def build_sinks(config: dict[str, dict[str, Any]]) -> list[Sink]:
    sinks: list[Sink] = []
    problems: list[Problem] = []
    for name, options in config.items():
        factory = BUILTIN_SINKS.get(name)
        if factory is None:
            problems.append(
                Problem("settings", None, f"sinks: unknown sink '{name}' (available: {', '.join(BUILTIN_SINKS)})")
            )
            continue
        try:
            sinks.append(factory(options or {}))
        except ValidationError as exc:
            problems.extend(Problem("settings", None, f"sinks.{name}: {e['loc']}: {e['msg']}") for e in exc.errors())
    if problems:
        raise InputError(problems)
    return sinks


__all__ = ["BUILTIN_SINKS", "Sink", "SweepOutcome", "build_sinks"]
