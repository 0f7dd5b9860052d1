"""`sentinel config show`: the effective settings (file < environment < flags), secrets masked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import yaml

from sentinel.cli.common import build_settings, settings_options
from sentinel.redact import redact_url
from sentinel.sinks.elasticsearch.settings import elasticsearch_settings, mask_url

MASK = "********"
SECRET_KEY = re.compile(r"(pass(word)?|secret|token|api_?key|credential|private_?key)$", re.IGNORECASE)


def mask_secrets(value: Any, key: str = "") -> Any:
    """Replace values under secret-looking keys, and credentials inside URLs, everywhere in a tree."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, key) for v in value]
    if value is not None and SECRET_KEY.search(key):
        return MASK
    if isinstance(value, str) and "://" in value:
        return redact_url(mask_url(value))
    return value


@click.group("config")
def config() -> None:
    """Inspect Sentinel's settings."""


@config.command("show")
@settings_options
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def show(config_file: Path | None, store: Path | None, fmt: str) -> None:
    """Print the effective settings. Passwords, API keys and tokens are masked."""
    settings = build_settings(config_file, store=store)
    data = settings.model_dump(mode="json")
    es = elasticsearch_settings(settings)
    if es is not None:
        data["elasticsearch"] = es.masked()
        data.get("sinks", {}).pop("elasticsearch", None)
    data = mask_secrets(data)
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        click.echo(yaml.safe_dump(data, allow_unicode=True, sort_keys=False).rstrip())
