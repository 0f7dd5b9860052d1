"""Users, roles and what each may do; tokens from config, a file or the environment; signed session cookies."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from sentinel.models.observer import check_site


class Role(StrEnum):
    OPERATOR = "operator"  # sees everything, acts on findings
    OWNER = "owner"  # sees only the department's systems; acknowledges and records rectifications
    AUDITOR = "auditor"  # sees everything, read-only, exports reports
    ADMIN = "admin"  # everything


class Permission(StrEnum):
    VIEW_ALL = "view_all"
    ACT = "act"  # suppress, accept risks and baselines, resolve, reopen: the SOC's decisions
    REMEDIATE = "remediate"  # acknowledge and record a rectification (通报 → 整改), asking for a re-check (复核)
    EXPORT = "export"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: frozenset({Permission.VIEW_ALL, Permission.ACT, Permission.REMEDIATE}),
    Role.OWNER: frozenset({Permission.REMEDIATE}),
    Role.AUDITOR: frozenset({Permission.VIEW_ALL, Permission.EXPORT}),
    Role.ADMIN: frozenset(Permission),
}


class UserSettings(BaseModel):
    """`users: [{name, token | token_file | token_env, role, department, sites}]` in sentinel.yaml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    role: Role
    department: str | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    token_env: str | None = None
    #: the sites this user sees on the estate pages (a district's people: their district); unset: every site
    sites: list[str] | None = None

    @field_validator("sites")
    @classmethod
    def _sites(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("sites: name at least one site, or leave 'sites' out to see every site")
        for site in value:
            check_site(site)
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _one_token_source(self) -> UserSettings:
        given = [x for x in (self.token, self.token_file, self.token_env) if x is not None]
        if len(given) != 1:
            raise ValueError(f"user '{self.name}': give exactly one of token, token_file, token_env")
        if self.role == Role.OWNER and not self.department:
            raise ValueError(f"user '{self.name}': the owner role needs a department")
        return self

    def resolve_token(self) -> str:
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            try:
                return self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"user '{self.name}': cannot read token_file {self.token_file}: {exc}") from None
        value = os.environ.get(self.token_env or "", "")
        if not value:
            raise ValueError(f"user '{self.name}': environment variable {self.token_env} is empty or unset")
        return value


class User(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    role: Role
    department: str | None = None
    #: the estate's sites this user sees (empty: every site)
    sites: tuple[str, ...] = ()

    def can(self, permission: Permission) -> bool:
        return permission in GRANTS[self.role]

    def sees(self, department: str) -> bool:
        return self.can(Permission.VIEW_ALL) or department == self.department

    def sees_site(self, site: str) -> bool:
        return not self.sites or site in self.sites


class Authenticator:
    def __init__(self, users: list[UserSettings], secret: bytes | None = None, session_seconds: int = 8 * 3600) -> None:
        tokens = [u.resolve_token() for u in users]
        if len(set(tokens)) != len(tokens):
            raise ValueError("users: two users share a token; every user needs their own")
        self._by_token_hash = {
            hashlib.sha256(token.encode()).digest(): User(
                name=u.name, role=u.role, department=u.department, sites=tuple(u.sites or ())
            )
            for u, token in zip(users, tokens, strict=True)
        }
        self._by_name = {u.name: u for u in self._by_token_hash.values()}
        self._secret = secret or secrets.token_bytes(32)
        self._session_seconds = session_seconds

    @property
    def has_users(self) -> bool:
        return bool(self._by_token_hash)

    def by_token(self, token: str) -> User | None:
        digest = hashlib.sha256(token.encode()).digest()
        for known, user in self._by_token_hash.items():
            if hmac.compare_digest(known, digest):
                return user
        return None

    def session_cookie(self, user: User) -> str:
        expires = int(time.time()) + self._session_seconds
        payload = f"{user.name}|{expires}"
        mac = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        return f"{payload}|{mac}"

    def by_session(self, cookie: str) -> User | None:
        try:
            name, expires, mac = cookie.rsplit("|", 2)
            deadline = int(expires)
        except ValueError:
            return None
        good = hmac.new(self._secret, f"{name}|{expires}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good, mac) or deadline < time.time():
            return None
        return self._by_name.get(name)

    def csrf_token(self, cookie: str) -> str:
        return hmac.new(self._secret, b"csrf|" + cookie.encode(), hashlib.sha256).hexdigest()[:32]
