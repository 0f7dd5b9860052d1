"""The declared scope: the only networks and DNS names Sentinel may ever send a packet to.

A host name is in scope when it ends with an allowed DNS suffix; the *address* it resolves to
must still fall inside an allowed CIDR before anything is sent. `deny` carves holes out of
`allow` and always wins.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field, field_validator

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


class Scope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))

    allow: list[str] = Field(default_factory=list)
    deny: list[str] = Field(default_factory=list)

    @field_validator("allow", "deny")
    @classmethod
    def _entries(cls, values: list[str]) -> list[str]:
        bad = []
        for value in values:
            text = value.strip()
            looks_numeric = any(c.isdigit() for c in text) and all(c in "0123456789abcdefABCDEF.:/" for c in text)
            if "/" in text or looks_numeric:
                if not _is_network(text):
                    bad.append(f"'{value}' is not a valid CIDR")
            elif not text or " " in text or text.startswith("*"):
                bad.append(f"'{value}' is neither a CIDR nor a DNS suffix")
        if bad:
            raise ValueError("; ".join(bad))
        return [v.strip() for v in values]

    @cached_property
    def networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(v, strict=False) for v in self.allow if _is_network(v))

    @cached_property
    def denied_networks(self) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(v, strict=False) for v in self.deny if _is_network(v))

    @cached_property
    def suffixes(self) -> tuple[str, ...]:
        return tuple(v.lower().strip(".") for v in self.allow if not _is_network(v))

    @cached_property
    def denied_suffixes(self) -> tuple[str, ...]:
        return tuple(v.lower().strip(".") for v in self.deny if not _is_network(v))

    def allows_address(self, address: str | IPAddress) -> bool:
        try:
            ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        except ValueError:
            return False
        if any(ip in net for net in self.denied_networks):
            return False
        return any(ip in net for net in self.networks)

    def allows_name(self, name: str) -> bool:
        host = name.lower().rstrip(".")

        def under(suffix: str) -> bool:
            return host == suffix or host.endswith("." + suffix)

        if any(under(s) for s in self.denied_suffixes):
            return False
        return any(under(s) for s in self.suffixes)

    def allows_host(self, host: str) -> bool:
        """An IP literal must be in an allowed CIDR; a name must be under an allowed suffix."""
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return self.allows_name(host)
        return self.allows_address(host.strip("[]"))

    def merged(self, other: Scope) -> Scope:
        return Scope(allow=[*self.allow, *other.allow], deny=[*self.deny, *other.deny])
