"""The declared scope: the only networks and DNS names Sentinel may ever send a packet to.

A host name is in scope when it ends with an allowed DNS suffix; the *address* it resolves to
must still fall inside an allowed CIDR before anything is sent. `deny` carves holes out of
`allow` and always wins.

A registry may not allow more than `WIDEST_IPV4` / `WIDEST_IPV6` (prefix lengths) or a whole top-level
domain unless its scope says `allow_wide: true`: `0.0.0.0/0` is almost always a mistake, and it would
make every address on the Internet probe-able.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: the widest allowed network without `allow_wide: true` (prefix length): a /8 for IPv4, a /32 for IPv6
WIDEST_IPV4 = 8
WIDEST_IPV6 = 32


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
    #: the owner's explicit, reviewable override of the width limit
    allow_wide: bool = False

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
        return Scope(
            allow=[*self.allow, *other.allow],
            deny=[*self.deny, *other.deny],
            allow_wide=self.allow_wide or other.allow_wide,
        )

    def too_wide(self, widest_v4: int = WIDEST_IPV4, widest_v6: int = WIDEST_IPV6) -> list[tuple[int, str]]:
        """(index in `allow`, why) for each entry wider than the limits; empty when `allow_wide` is set."""
        if self.allow_wide:
            return []
        wide = []
        for index, entry in enumerate(self.allow):
            if _is_network(entry):
                net = ipaddress.ip_network(entry, strict=False)
                limit = widest_v4 if net.version == 4 else widest_v6
                if net.prefixlen < limit:
                    wide.append((index, f"'{entry}' is wider than a /{limit} ({_count(net.num_addresses)} addresses)"))
            elif "." not in entry.strip(".") and entry.strip(".").lower() != "localhost":
                # `localhost` is no public domain: RFC 6761 keeps it (and every name under it) on loopback
                wide.append((index, f"'{entry}' is a whole top-level domain"))
        return wide

    def address_count(self) -> dict[int, int]:
        """Allowed addresses per IP version, after `deny` (overlapping entries counted once)."""
        v4, v6 = ipaddress.IPv4Network, ipaddress.IPv6Network
        return {
            4: _size(
                [n for n in self.networks if isinstance(n, v4)], [n for n in self.denied_networks if isinstance(n, v4)]
            ),
            6: _size(
                [n for n in self.networks if isinstance(n, v6)], [n for n in self.denied_networks if isinstance(n, v6)]
            ),
        }

    def describe_size(self) -> str:
        """'65,536 IPv4 + 2^80 IPv6 addresses, 1 DNS suffix': what `registry validate` prints."""
        counts = self.address_count()
        suffixes = len(self.suffixes)
        return (
            f"{_count(counts[4])} IPv4 + {_count(counts[6])} IPv6 addresses, "
            f"{suffixes} DNS suffix{'es' if suffixes != 1 else ''}"
        )


_Net = TypeVar("_Net", ipaddress.IPv4Network, ipaddress.IPv6Network)


def _size(allow: list[_Net], deny: list[_Net]) -> int:
    allowed = list(ipaddress.collapse_addresses(allow))
    total = sum(n.num_addresses for n in allowed)
    for d in ipaddress.collapse_addresses(deny):  # both sides disjoint after collapsing: each overlap counted once
        for a in allowed:
            if d.subnet_of(a):
                total -= d.num_addresses
            elif a.subnet_of(d):
                total -= a.num_addresses
    return total


def _count(n: int) -> str:
    """A count for people: grouped digits, or a power of two once it has more digits than anyone reads."""
    if n >= 2**40 and n & (n - 1) == 0:
        return f"2^{n.bit_length() - 1}"
    return f"{n:,}"
