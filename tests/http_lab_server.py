"""A small real HTTP server for the HTTP-probe tests, run in its own process so that its answers (and curl's
timing of them) do not depend on the test's event loop.

    python -m tests.http_lab_server PORT ADDRESS [ADDRESS...] [--tls CERT KEY TLS_PORT]

Routes: `/any?delay_ms=N` answers a small HTML page after N ms; `/status/CODE` answers with that status;
`/slowbody?delay_ms=N` sends the headers at once and the body N ms later; `/gzip` sends the page gzip-encoded
and chunked; `/redirect?to=PATH` answers 302 to PATH. With `--tls`, the same routes are also served over
HTTPS on TLS_PORT. Prints `ready` once listening.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
import sys

from aiohttp import web

PAGE = "<html><head><title>lab</title></head><body>" + "lab page " * 200 + "</body></html>"
MAX_DELAY_S = 10.0  # bounded: a test cannot make the server hang for long


def _delay(request: web.Request) -> float:
    try:
        return min(MAX_DELAY_S, max(0.0, float(request.query.get("delay_ms", "0")) / 1000))
    except ValueError:
        return 0.0


async def handle(request: web.Request) -> web.StreamResponse:
    path = request.path
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1] or "200")
        return web.Response(status=code, text=f"status {code}", content_type="text/html")
    if path == "/slowbody":
        resp = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Length": str(len(PAGE))})
        await resp.prepare(request)
        await resp.write(b"")  # the headers go out now
        await asyncio.sleep(_delay(request))
        await resp.write(PAGE.encode())
        await resp.write_eof()
        return resp
    if path == "/gzip":
        resp = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        packed = gzip.compress(PAGE.encode())
        for i in range(0, len(packed), 200):  # several chunks
            await resp.write(packed[i : i + 200])
        await resp.write_eof()
        return resp
    if path == "/redirect":
        raise web.HTTPFound(request.query.get("to", "/"))
    delay = _delay(request)
    if delay:
        await asyncio.sleep(delay)
    return web.Response(text=PAGE, content_type="text/html")


async def main(port: int, addresses: list[str], tls: tuple[str, str, int] | None) -> None:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = None
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls[0], tls[1])
    for address in addresses:
        await web.TCPSite(runner, address, port, backlog=1024).start()
        if tls is not None:
            await web.TCPSite(runner, address, tls[2], ssl_context=context, backlog=1024).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    args = sys.argv[1:]
    tls_args = None
    if "--tls" in args:
        at = args.index("--tls")
        cert, key, tls_port = args[at + 1 : at + 4]
        tls_args = (cert, key, int(tls_port))
        del args[at : at + 4]
    asyncio.run(main(int(args[0]), args[1:], tls_args))
