"""Sinks fed from the store's outbox. To add one: a module with an `OutboxSink` subclass (its options a
`SinkOptions` model), one line in `BUILTIN_SINKS`, one test; users enable it under `sinks: {NAME: {...}}` in
sentinel.yaml or with SENTINEL_SINKS__NAME__KEY variables."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from sentinel.errors import InputError, Problem
from sentinel.sinks.alertmanager import AlertmanagerSink
from sentinel.sinks.base import OutboxSink, Sink, SweepOutcome
from sentinel.sinks.jsonl import JsonLinesSink
from sentinel.sinks.settings import SinkSettingsSource, sink_sections, validate_options
from sentinel.sinks.syslog import SyslogSink

SinkFactory = Callable[[Mapping[str, Any]], OutboxSink]


def _elasticsearch(options: Mapping[str, Any]) -> OutboxSink:
    from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
    from sentinel.sinks.elasticsearch.sink import ElasticsearchSink  # the client library loads only when enabled

    return ElasticsearchSink(validate_options(ElasticsearchSettings, "elasticsearch", options))


def _typed(cls: type[OutboxSink]) -> SinkFactory:
    return lambda options: cls(validate_options(cls.Options, cls.name, options))


BUILTIN_SINKS: dict[str, SinkFactory] = {
    "jsonl": _typed(JsonLinesSink),
    "alertmanager": _typed(AlertmanagerSink),
    "elasticsearch": _elasticsearch,
    "syslog": _typed(SyslogSink),
}


def sink_options_model(name: str) -> type[BaseModel] | None:
    """Sink `name`'s options model (None: not known here), so loading the settings checks `sinks.NAME` where it
    knows the file's lines (FILE:LINE); the Elasticsearch client library is not loaded for it."""
    if name == "elasticsearch":
        from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings

        return ElasticsearchSettings
    typed = {cls.name: cls.Options for cls in (JsonLinesSink, AlertmanagerSink, SyslogSink)}
    return typed.get(name)


def build_sinks(config: Mapping[str, Mapping[str, Any]] | SinkSettingsSource) -> list[OutboxSink]:
    """The configured sinks, from the `sinks:` sections (or a Settings, which adds the deprecated Elasticsearch
    forms); every mistake is an InputError naming `sinks.NAME.KEY`."""
    sections = sink_sections(config) if hasattr(config, "sinks") else {k: dict(v or {}) for k, v in config.items()}
    site = getattr(config, "site", None)  # a Settings: Elasticsearch's index names follow the instance's site
    sinks: list[OutboxSink] = []
    problems: list[Problem] = []
    for name, options in sections.items():
        factory = BUILTIN_SINKS.get(name)
        if factory is None:
            problems.append(
                Problem("settings", None, f"sinks: unknown sink '{name}' (available: {', '.join(BUILTIN_SINKS)})")
            )
            continue
        try:
            given = options or {}
            if name == "elasticsearch":
                from sentinel.sinks.elasticsearch.settings import instance_options

                given = instance_options(given, site)
            sinks.append(factory(given))
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputError(problems)
    return sinks


__all__ = ["BUILTIN_SINKS", "OutboxSink", "Sink", "SweepOutcome", "build_sinks", "sink_options_model"]
