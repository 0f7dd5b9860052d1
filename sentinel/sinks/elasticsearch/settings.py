"""Elasticsearch connection and shipping settings: `sinks: {elasticsearch: {...}}` in sentinel.yaml, or
SENTINEL_SINKS__ELASTICSEARCH__<KEY>. The former `elasticsearch:` section and SENTINEL_ELASTICSEARCH_<KEY> still
work, with a deprecation warning (see `sentinel.sinks.settings.sink_sections`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator

from sentinel.errors import InputError, Problem
from sentinel.models.observer import DEFAULT_SITE, check_site
from sentinel.sinks.settings import SinkOptions, SinkSettingsSource, sink_sections, validate_options

ENV_PREFIX = "SENTINEL_ELASTICSEARCH_"


class ElasticsearchSettings(SinkOptions):
    """Where and how to ship. Secrets are `SecretStr`: they print as '**********' everywhere."""

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
    ship_observations: bool = True
    # shipped by `sentinel run` and `sentinel sinks ship`, as before the shared outbox
    flush_after_ingest: bool = False
    #: the instance's `site` (set from the settings by `instance_options`, not a key of this section): the suffix
    #: of every index this instance writes
    site: str = DEFAULT_SITE

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        return check_site(value)

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


def instance_options(section: Mapping[str, Any], site: str | None) -> dict[str, Any]:
    """The section with the instance's site (what its index names end with). The site is the instance's, one for
    all it records (`site:` / SENTINEL_SITE), so the section itself may not name another one."""
    if site is not None and section.get("site", site) != site:
        raise InputError(
            [
                Problem(
                    "settings",
                    None,
                    f"sinks.elasticsearch.site: '{section['site']}' is not this instance's site '{site}': the index "
                    "names follow the instance's 'site' (top-level 'site:' or SENTINEL_SITE); leave it out here",
                )
            ]
        )
    return {**section, "site": site} if site is not None else dict(section)


def elasticsearch_settings(
    settings: SinkSettingsSource, environ: Mapping[str, str] | None = None
) -> ElasticsearchSettings | None:
    """The effective Elasticsearch settings, or None when Elasticsearch is not configured."""
    data = sink_sections(settings, environ).get("elasticsearch")
    if not data:
        return None
    site = getattr(settings, "site", None)
    return validate_options(ElasticsearchSettings, "elasticsearch", instance_options(data, site))


def require_elasticsearch_settings(
    settings: SinkSettingsSource, environ: Mapping[str, str] | None = None
) -> ElasticsearchSettings:
    found = elasticsearch_settings(settings, environ)
    if found is None:
        raise InputError(
            [
                Problem(
                    "settings",
                    None,
                    "Elasticsearch is not configured ('sinks: {elasticsearch: {url: ...}}' or "
                    "SENTINEL_SINKS__ELASTICSEARCH__URL; formerly SENTINEL_ELASTICSEARCH_URL)",
                )
            ]
        )
    return found
