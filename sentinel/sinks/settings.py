"""Sink settings: one section `sinks: {NAME: {...}}` in sentinel.yaml, one environment convention
`SENTINEL_SINKS__<NAME>__<KEY>` (the general settings rule), and a typed pydantic model per sink.

`SinkOptions` holds what every outbox sink shares (batching, retry backoff, queue bounds); a sink's own model
subclasses it. The deprecated Elasticsearch forms (a top-level `elasticsearch:` section, `SENTINEL_ELASTICSEARCH_*`)
still work and are merged under `sinks.elasticsearch` with a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from sentinel.errors import InputError, Problem

LEGACY_ES_ENV = "SENTINEL_ELASTICSEARCH_"
Options = TypeVar("Options", bound=BaseModel)


class SinkOptions(BaseModel):
    """Queue and delivery policy, the same keys for every sink."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(default=1000, ge=1, le=10_000, description="rows per delivery (one _bulk, one POST...)")
    ship_timeout: float = Field(default=60.0, gt=0, description="how long one `sinks ship` keeps retrying")
    backoff_initial: float = Field(default=0.5, gt=0, le=60)
    backoff_max: float = Field(default=30.0, gt=0, le=3600)
    outbox_max_items: int = Field(default=1_000_000, ge=100, description="queue bound (finding state is never dropped)")
    outbox_min_free_bytes: int = Field(
        default=512 * 1024 * 1024, ge=0, description="stop queueing droppable rows below this free disk"
    )
    ship_observations: bool = Field(default=False, description="queue every observation too, not only findings")
    flush_after_ingest: bool = Field(
        default=True,
        description="one-shot commands (scan, pcap) deliver right after recording; `run` ships from its loop",
    )


class SinkSettingsSource(Protocol):
    """What sink settings are read from (`sentinel.config.settings.Settings`; no import of it here)."""

    @property
    def sinks(self) -> Mapping[str, Mapping[str, Any]]: ...


def _plain(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.get_secret_value() if isinstance(v, SecretStr) else v) for k, v in data.items()}


def _legacy_elasticsearch(
    settings: SinkSettingsSource, environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The deprecated `elasticsearch:` section, and the SENTINEL_ELASTICSEARCH_* variables (one per field)."""
    section: dict[str, Any] = {}
    found = getattr(settings, "elasticsearch", None)
    if isinstance(found, BaseModel):
        section = _plain(found.model_dump(exclude_unset=True))
    elif isinstance(found, Mapping):
        section = _plain(found)
    if section:
        warnings.warn(
            "settings: the top-level 'elasticsearch:' section is deprecated; move it to 'sinks: {elasticsearch: ...}'",
            FutureWarning,
            stacklevel=4,
        )
    env: dict[str, Any] = {}
    for key, value in environ.items():
        # SENTINEL_ELASTICSEARCH_URL, and the nested SENTINEL_ELASTICSEARCH__URL
        if key.startswith(LEGACY_ES_ENV):
            env[key[len(LEGACY_ES_ENV) :].lstrip("_").lower()] = value
    if env:
        names = ", ".join(LEGACY_ES_ENV + k.upper() for k in sorted(env))
        warnings.warn(
            f"environment: {names}: deprecated, use SENTINEL_SINKS__ELASTICSEARCH__<KEY>", FutureWarning, stacklevel=4
        )
    return section, env


def sink_sections(settings: SinkSettingsSource, environ: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The effective raw options per sink name: `sinks.NAME` (file < SENTINEL_SINKS__NAME__KEY), with the
    deprecated `elasticsearch:` section below it and the deprecated SENTINEL_ELASTICSEARCH_* above it."""
    sections = {name: _plain(dict(options or {})) for name, options in settings.sinks.items()}
    section, env = _legacy_elasticsearch(settings, os.environ if environ is None else environ)
    if section or env:
        sections["elasticsearch"] = {**section, **sections.get("elasticsearch", {}), **env}
    return sections


def validate_options(model: type[Options], name: str, options: Mapping[str, Any]) -> Options:
    """The sink's typed options, or an InputError naming each bad key as `sinks.NAME.KEY` (never a traceback)."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        raise InputError(
            [
                Problem("settings", None, f"sinks.{name}.{'.'.join(map(str, e['loc'])) or '?'}: {e['msg']}")
                for e in exc.errors()
            ]
        ) from None
