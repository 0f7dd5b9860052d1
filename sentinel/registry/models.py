"""Typed registry: the systems Sentinel is responsible for, and the scope it may probe."""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from functools import cached_property
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sentinel.models.observer import Vantage, check_vantage
from sentinel.registry.scope import Scope

SYSTEM_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$", re.I
)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Tier(StrEnum):
    CITY = "city"
    DISTRICT = "district"
    STREET = "street"


class Owner(Strict):
    department: str = Field(min_length=1)
    contact: str | None = None
    email: str | None = None
    phone: str | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.match(value):
            raise ValueError(f"'{value}' is not an e-mail address")
        return value


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def without_userinfo(url: str) -> str:
    """The URL as safe to show in a message: any `user:password@` replaced by `***@`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{sep}{authority}{slash}{path}"


def check_host(host: str) -> str:
    host = host.strip().strip("[]")
    if "@" in host:  # never echoed: what precedes '@' may be a password
        raise ValueError("a host must not carry credentials ('user:password@'); remove them from the registry")
    if is_ip(host):
        return str(ipaddress.ip_address(host))
    if not HOSTNAME.match(host):
        raise ValueError(f"'{host}' is neither an IP address nor a host name")
    return host.lower().rstrip(".")


class Endpoint(Strict):
    """Either a URL (probed over HTTP/TLS) or a host with the ports that are supposed to be open."""

    url: str | None = None
    host: str | None = None
    ports: list[Port] = Field(default_factory=list)
    name: str | None = None
    #: the vantages its ports should answer from (e.g. a management port: [internal]); None: no restriction.
    #: A port that answers a monitor at another vantage is a source-restriction finding.
    reachable_from: list[Vantage] | None = None

    @field_validator("reachable_from", mode="before")
    @classmethod
    def _vantages(cls, value: object) -> object:
        if isinstance(value, str):  # a single name, written without brackets
            value = [value]
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list would forbid every vantage; leave 'reachable_from' out instead")
            return [check_vantage(v) if isinstance(v, str) else v for v in value]
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        shown = without_userinfo(value)  # messages never repeat a password
        if "@" in parts.netloc:
            # credentials would travel into targets, observations, sinks and the web view
            raise ValueError(
                f"'{shown}' carries credentials ('user:password@'); the registry must not hold secrets, remove them"
            )
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"'{shown}' is not an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError(f"'{shown}' has no host name")
        check_host(parts.hostname)
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"'{shown}' has an invalid port") from None
        return value

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return None if value is None else check_host(value)

    @model_validator(mode="after")
    def _one_kind(self) -> Endpoint:
        if (self.url is None) == (self.host is None):
            raise ValueError("an endpoint needs exactly one of 'url' or 'host'")
        if self.url is not None and self.ports:
            raise ValueError("'ports' belongs to 'host' endpoints; a URL's port is part of the URL")
        return self

    @property
    def hostname(self) -> str:
        if self.host is not None:
            return self.host
        assert self.url is not None
        return str(urlsplit(self.url).hostname).lower().rstrip(".")

    @property
    def url_port(self) -> int | None:
        if self.url is None:
            return None
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def declared_ports(self) -> tuple[int, ...]:
        """Ports the owner says are open: the listed ones, or the URL's port."""
        if self.url is not None:
            port = self.url_port
            return (port,) if port else ()
        return tuple(sorted(set(self.ports)))


class System(Strict):
    id: str
    name: str = Field(min_length=1)
    owner: Owner
    tier: Tier
    mlps_level: int = Field(ge=1, le=5)
    cii: bool = False
    endpoints: list[Endpoint] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    district: str | None = None
    description: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not SYSTEM_ID.match(value):
            raise ValueError(
                f"'{value}' is not a valid system id (lowercase letters, digits, '.', '_', '-'; at most 100)"
            )
        return value


class Registry(BaseModel):
    """Every registered system, plus the scope that bounds all probing."""

    model_config = ConfigDict(frozen=True, ignored_types=(cached_property,))

    scope: Scope
    systems: tuple[System, ...]
    sources: tuple[str, ...] = ()

    @cached_property
    def by_id(self) -> dict[str, System]:
        return {s.id: s for s in self.systems}

    def system(self, system_id: str) -> System | None:
        return self.by_id.get(system_id)
