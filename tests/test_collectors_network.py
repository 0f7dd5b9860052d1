"""collectors/network.py: the shared HTTP session of ScopedNetwork refuses targets outside the scope."""

from __future__ import annotations

import pytest
from aiohttp import web

from sentinel.collectors.network import OutOfScope, ScopedNetwork
from tests.support.loopback_http import serve_on
from tests.support.probe_runs import OTHER, SCOPE, SETTINGS


async def test_the_shared_http_session_refuses_out_of_scope_literals(runners: list[web.AppRunner]) -> None:
    """aiohttp skips the resolver for IP literals; the session's request hook must still refuse them."""

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="should not be reached")

    runner, port = await serve_on(OTHER, ok)
    runners.append(runner)
    net = ScopedNetwork(SCOPE, SETTINGS)
    try:
        with pytest.raises(OutOfScope):
            async with net.http_session().get(f"http://{OTHER}:{port}/"):
                raise AssertionError(f"connected to {OTHER}, outside the scope")
    finally:
        await net.close()
