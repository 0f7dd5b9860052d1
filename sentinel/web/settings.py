"""`web:` in sentinel.yaml: users and the view's default language."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sentinel.web.auth import UserSettings


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    users: list[UserSettings] = Field(default_factory=list)
    language: Literal["zh", "en"] = "zh"
    session_hours: float = Field(default=8.0, gt=0, le=168)
