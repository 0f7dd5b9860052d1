"""`web:` in sentinel.yaml: users, the view's default language, and where the city's estate view reads from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sentinel.models.observer import check_site
from sentinel.web.auth import UserSettings


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    users: list[UserSettings] = Field(default_factory=list)
    language: Literal["zh", "en"] = "zh"
    session_hours: float = Field(default=8.0, gt=0, le=168)
    #: `elasticsearch`: the estate pages (/estate, /api/estate) read every site from the shared cluster, with the
    #: `sinks.elasticsearch` connection; `store` (the default): a single site, no estate pages
    estate: Literal["store", "elasticsearch"] = "store"
    #: the sites expected to report: each gets its row even before it has shipped anything
    estate_sites: list[str] = Field(default_factory=list)
    #: a site whose newest finding change or observation is older than this is shown as silent
    estate_silent_minutes: float = Field(default=60.0, gt=0, le=7 * 24 * 60)
    #: an active finding not confirmed for this long counts as stale in the estate figures
    estate_stale_hours: float = Field(default=24.0, gt=0, le=90 * 24)

    @field_validator("estate_sites")
    @classmethod
    def _sites(cls, value: list[str]) -> list[str]:
        for site in value:
            check_site(site)
        twice = sorted({s for s in value if value.count(s) > 1})
        if twice:
            raise ValueError(f"estate_sites: each site once (given more than once: {', '.join(twice)})")
        return value

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
