"""`web:` in sentinel.yaml: users and the view's default language."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sentinel.web.auth import UserSettings


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    users: list[UserSettings] = Field(default_factory=list)
    language: Literal["zh", "en"] = "zh"
    session_hours: float = Field(default=8.0, gt=0, le=168)

    @model_validator(mode="after")
    def _unique_users(self) -> WebSettings:
        names = [u.name for u in self.users]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"users: each name must be unique (given more than once: {', '.join(twice)})")
        literal = [u.token.get_secret_value() for u in self.users if u.token is not None]
        if len(literal) != len(set(literal)):
            raise ValueError("users: two users share a token; every user needs their own")
        return self
