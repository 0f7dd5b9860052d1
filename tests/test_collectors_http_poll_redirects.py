"""The http probe against real loopback aiohttp servers: a redirect chain, its headers and body digest, a redirect
out of scope recorded and not followed, and failures as error observations of their kind."""

from __future__ import annotations

import asyncio

from aiohttp import web

from sentinel.collectors.http_poll import HttpProbe
from sentinel.demo.estate import free_port
from tests.support.loopback_http import serve_on
from tests.support.probe_runs import IP, OTHER, SETTINGS, run_probe, system


async def test_http_redirect_chain_headers_and_digest(runners: list[web.AppRunner]) -> None:
    async def final(_: web.Request) -> web.Response:
        return web.Response(text="hello", headers={"Server": "nginx/1.18.0", "Strict-Transport-Security": "max-age=1"})

    runner, port = await serve_on(IP, final)
    runners.append(runner)

    async def hop(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{IP}:{port}/final")

    runner2, port2 = await serve_on(IP, hop)
    runners.append(runner2)
    (obs,) = await run_probe(HttpProbe, system({"url": f"http://{IP}:{port2}/"}))
    assert obs.status.value == "ok"
    assert obs.data["status_code"] == 200 and obs.data["redirect_count"] == 1
    assert obs.data["redirects"][0]["status"] == 302 and obs.data["final_url"] == f"http://{IP}:{port}/final"
    assert obs.data["redirects_to_https"] is False and obs.data["server"] == "nginx/1.18.0"
    assert obs.data["body_sha256"] == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert obs.data["hsts_present"] is None  # not HTTPS: HSTS is not applicable, so not "missing"


async def test_redirect_out_of_scope_is_recorded_and_not_followed(runners: list[web.AppRunner]) -> None:
    hits: list[str] = []

    async def outside(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="should never be fetched")

    runner_out, port_out = await serve_on(OTHER, outside)
    runners.append(runner_out)

    async def hop(_: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"http://{OTHER}:{port_out}/")

    runner, port = await serve_on(IP, hop)
    runners.append(runner)
    (obs,) = await run_probe(HttpProbe, system({"url": f"http://{IP}:{port}/"}))
    assert obs.data["redirect.out_of_scope"] == f"http://{OTHER}:{port_out}/"
    assert hits == []


async def test_unreachable_and_timeout_are_error_observations(runners: list[web.AppRunner]) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    runner, port = await serve_on(IP, slow)
    runners.append(runner)
    dead = free_port(IP)
    settings = SETTINGS.model_copy(update={"http_timeout": 0.5})
    obs = await run_probe(HttpProbe, system({"url": f"http://{IP}:{port}/"}, {"url": f"http://{IP}:{dead}/"}), settings)
    kinds = {o.data["failed_url"]: o.data["error_kind"] for o in obs}
    assert kinds == {f"http://{IP}:{port}/": "timeout", f"http://{IP}:{dead}/": "connect"}
    assert all(o.status.value == "error" and o.data["reachable"] is False and o.error for o in obs)
