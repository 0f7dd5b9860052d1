"""Addresses as integers, and which registered system each one belongs to.

IPv4 addresses are their 32-bit value; IPv6 addresses are interned to ids above 2**32 (bounded:
past `max_v6` distinct addresses the rest share one overflow id), so every detector keys on int64.
"""

from __future__ import annotations

import ipaddress
import socket

import numpy as np
import numpy.typing as npt

from sentinel.registry.models import Registry, is_ip

V6_BASE = 1 << 32
#: System id given to observations whose hosts are all outside the registry (see docs in analyze.py).
UNREGISTERED = "unregistered"


class AddressBook:
    def __init__(self, registry: Registry, max_v6: int = 1_000_000) -> None:
        self._v6: dict[bytes, int] = {}
        self._v6_list: list[bytes] = []
        self._max_v6 = max_v6
        self._texts: dict[int, str] = {}
        self.system_of: dict[int, str] = {}
        self.declared: dict[int, set[int]] = {}
        for system in registry.systems:
            for endpoint in system.endpoints:
                if not is_ip(endpoint.hostname):
                    continue  # host names are attributed only when an endpoint names the address itself
                aid = self.id_of(endpoint.hostname)
                self.system_of.setdefault(aid, system.id)
                self.declared.setdefault(aid, set()).update(endpoint.declared_ports)
        self.registered = np.array(sorted(self.system_of), np.int64)

    @property
    def overflow_id(self) -> int:
        return V6_BASE + self._max_v6

    def intern_v6(self, raw: bytes) -> int:
        aid = self._v6.get(raw)
        if aid is None:
            if len(self._v6_list) >= self._max_v6:
                return self.overflow_id
            aid = self._v6[raw] = V6_BASE + len(self._v6_list)
            self._v6_list.append(raw)
        return aid

    def id_of(self, text: str) -> int:
        addr = ipaddress.ip_address(text)
        if addr.version == 4:
            return int(addr)
        return self.intern_v6(addr.packed)

    def text(self, aid: int) -> str:
        # reports name the same addresses many times (a scanner in every sample of its targets): remembered
        # once made; bounded by the addresses of the observations, which are capped per kind
        known = self._texts.get(aid)
        if known is not None:
            return known
        if aid < V6_BASE:
            known = socket.inet_ntoa(aid.to_bytes(4, "big"))  # as str(IPv4Address), ~20x faster
        else:
            index = aid - V6_BASE
            known = str(ipaddress.IPv6Address(self._v6_list[index])) if index < len(self._v6_list) else "(other IPv6)"
        self._texts[aid] = known
        return known

    def system(self, aid: int) -> str | None:
        return self.system_of.get(aid)

    def attribute(self, *aids: int) -> str:
        """The first of the given addresses that belongs to a registered system, else `unregistered`."""
        for aid in aids:
            sid = self.system_of.get(aid)
            if sid is not None:
                return sid
        return UNREGISTERED

    def is_registered(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return np.isin(ids, self.registered)
