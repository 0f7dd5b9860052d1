"""aiohttp servers on a loopback address of the test's, for the probes' tests (stopped by the `runners` fixture)."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

from sentinel.demo.estate import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve_on(host: str, handler: Handler, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Serve every GET path with `handler` on a free port of `host`; the caller cleans the runner up."""
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(host)
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    return runner, port
