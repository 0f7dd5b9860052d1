"""Elasticsearch connection and shipping settings: `elasticsearch:` in sentinel.yaml, or SENTINEL_ELASTICSEARCH_*."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from sentinel.errors import InputError, Problem

if TYPE_CHECKING:  # sentinel.config.settings will import this module for its `elasticsearch` field
    from sentinel.config.settings import Settings

ENV_PREFIX = "SENTINEL_ELASTICSEARCH_"


class ElasticsearchSettings(BaseModel):
    """Where and how to ship. Secrets are `SecretStr`: they print as '**********' everywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="e.g. https://es.soc.example:9200")
    api_key: SecretStr | None = Field(default=None, description="base64 'id:key' API key (preferred over basic)")
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = Field(default=None, description="PEM bundle that signed the cluster's certificate")
    verify_certs: bool = True
    index_prefix: str = Field(default="sentinel", pattern=r"^[a-z0-9][a-z0-9_.-]{0,40}$")
    retention_days: int = Field(
        default=365, ge=180, description="ILM delete age; the Cybersecurity Law asks >= 6 months"
    )
    request_timeout: float = Field(default=30.0, gt=0, le=600)
    batch_size: int = Field(default=1000, ge=1, le=10_000, description="documents per _bulk request")
    ship_timeout: float = Field(default=60.0, gt=0, description="how long one `es ship` keeps retrying")
    backoff_initial: float = Field(default=0.5, gt=0, le=60)
    backoff_max: float = Field(default=30.0, gt=0, le=3600)
    outbox_max_items: int = Field(default=1_000_000, ge=100, description="queue bound (finding state is never dropped)")
    outbox_min_free_bytes: int = Field(
        default=512 * 1024 * 1024, ge=0, description="stop queueing below this free disk"
    )
    ship_observations: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"'{value}' is not an http:// or https:// URL")
        return value.rstrip("/")

    def masked(self) -> dict[str, Any]:
        """For display: secrets replaced by a fixed mask, user info stripped from the URL."""
        data = self.model_dump(mode="json")
        for key in ("api_key", "password"):
            if data.get(key) is not None:
                data[key] = "********"
        data["url"] = mask_url(self.url)
        return data


def mask_url(url: str) -> str:
    """https://user:pw@host → https://********@host: credentials embedded in a URL are secrets too."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://********@{rest.split('@', 1)[1]}"
    return url


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """SENTINEL_ELASTICSEARCH_URL, _API_KEY, _USERNAME, _PASSWORD, _CA_FILE, ... (one per field).

    The nested form SENTINEL_ELASTICSEARCH__URL (what Settings' own environment rule produces) works too.
    """
    out: dict[str, Any] = {}
    for name in ElasticsearchSettings.model_fields:
        value = environ.get(ENV_PREFIX + name.upper(), environ.get(f"{ENV_PREFIX}_{name.upper()}"))
        if value is not None:
            out[name] = value
    return out


def raw_elasticsearch_section(settings: Settings) -> dict[str, Any] | None:
    """The `elasticsearch:` section once Settings has the field, else the interim `sinks.elasticsearch`."""
    section = getattr(settings, "elasticsearch", None)
    if isinstance(section, BaseModel):
        return section.model_dump()
    if isinstance(section, Mapping):
        return dict(section)
    interim = settings.sinks.get("elasticsearch")
    return dict(interim) if interim is not None else None


def elasticsearch_settings(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> ElasticsearchSettings | None:
    """The effective Elasticsearch settings (file < environment), or None when Elasticsearch is not configured."""
    data = raw_elasticsearch_section(settings) or {}
    data = {k: (v.get_secret_value() if isinstance(v, SecretStr) else v) for k, v in data.items()}
    data.update(_from_environment(os.environ if environ is None else environ))
    if not data:
        return None
    try:
        return ElasticsearchSettings.model_validate(data)
    except ValidationError as exc:
        raise InputError(
            [
                Problem("settings", None, f"elasticsearch.{'.'.join(map(str, e['loc']))}: {e['msg']}")
                for e in exc.errors()
            ]
        ) from None


def require_elasticsearch_settings(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> ElasticsearchSettings:
    found = elasticsearch_settings(settings, environ)
    if found is None:
        raise InputError(
            [
                Problem(
                    "settings",
                    None,
                    "Elasticsearch is not configured ('elasticsearch: {url: ...}' or SENTINEL_ELASTICSEARCH_URL)",
                )
            ]
        )
    return found
