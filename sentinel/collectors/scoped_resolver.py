"""The aiohttp resolver of `ScopedNetwork.http_session`: names resolve through the scope-checked `resolve`.

A module of its own because it subclasses an aiohttp class: `network` (which the settings import for the probes'
options) then loads aiohttp only when a session is made.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from aiohttp.abc import AbstractResolver, ResolveResult

if TYPE_CHECKING:
    from sentinel.collectors.network import ScopedNetwork


class ScopedResolver(AbstractResolver):
    def __init__(self, net: ScopedNetwork) -> None:
        self._net = net

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        addresses = await self._net.resolve(host)
        out: list[ResolveResult] = []
        for address in addresses:
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            out.append(
                ResolveResult(hostname=host, host=address, port=port, family=fam, proto=0, flags=socket.AI_NUMERICHOST)
            )
        return out

    async def close(self) -> None:
        return None
