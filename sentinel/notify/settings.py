"""Notification settings (`notify:` in sentinel.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from sentinel.models import Severity


class SmtpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = True
    ssl: bool = False  # implicit TLS (port 465)
    sender: str
    timeout: float = Field(default=15.0, gt=0)
    ca_file: str | None = None


class WebhookSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    format: Literal["generic", "wecom", "dingtalk", "feishu"] = "generic"
    secret: SecretStr | None = None
    #: only this department's systems; a webhook without one is the SOC's and receives every owner's digest
    department: str | None = None
    timeout: float = Field(default=10.0, gt=0)


class NotifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    smtp: SmtpSettings | None = None
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    #: events at or above this severity are sent at once; the rest wait for the digest
    immediate_severity: Severity = Severity.CRITICAL
    digest_hours: float = Field(default=24.0, gt=0)
    #: at most this many messages per recipient per hour (immediate sends included)
    max_per_hour: int = Field(default=6, ge=1)
    retries: int = Field(default=3, ge=0, le=10)
    retry_backoff: float = Field(default=1.0, ge=0)
    language: Literal["zh", "en"] = "zh"
