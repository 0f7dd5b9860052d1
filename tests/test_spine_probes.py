"""Each v1 probe against real loopback servers (aiohttp, Python ssl servers with generated certificates)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from sentinel.collectors.http_poll import HttpProbe
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.collectors.tcp_ports import TcpPortProbe
from sentinel.collectors.tls_cert import TlsOptions, TlsProbe
from sentinel.config.settings import CollectorSettings
from sentinel.demo.certs import TestCA
from sentinel.demo.estate import free_port
from sentinel.models import Observation
from sentinel.registry.models import Owner, System, Tier
from sentinel.registry.scope import Scope

IP = "127.79.0.10"
OTHER = "127.79.1.10"  # outside the scope below
SCOPE = Scope(allow=["127.79.0.0/24"])
SETTINGS = CollectorSettings(connect_timeout=1.0, http_timeout=3.0, per_target_rate=100, per_target_burst=50)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(host: str, handler: Handler, tls: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(host)
    await web.TCPSite(runner, host, port, ssl_context=tls).start()
    return runner, port


@pytest.fixture
async def runners() -> AsyncIterator[list[web.AppRunner]]:
    started: list[web.AppRunner] = []
    yield started
    for r in started:
        await r.cleanup()


def system(*endpoints: dict[str, object]) -> System:
    return System.model_validate(
        {
            "id": "sys",
            "name": "S",
            "owner": Owner(department="IT"),
            "tier": Tier.CITY,
            "mlps_level": 3,
            "endpoints": list(endpoints),
        }
    )


async def run_probe(probe_cls: type, sys: System, settings: CollectorSettings = SETTINGS) -> list[Observation]:
    probe = probe_cls(settings)
    net = ScopedNetwork(SCOPE, settings)
    try:
        out: list[Observation] = []
        for job in probe.plan(sys):
            out.extend(await run_job(PlannedJob(probe, job), net, 20))
        return out
    finally:
        await net.close()


async def test_tcp_ports_open_closed_and_declared() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), IP, 0)
    port = server.sockets[0].getsockname()[1]
    closed = free_port(IP)
    try:
        obs = await run_probe(TcpPortProbe, system({"host": IP, "ports": [port, closed]}))
    finally:
        server.close()
    ports = {o.data["port"]: o for o in obs if o.kind == "port"}
    assert ports[port].data["state"] == "open" and ports[port].data["declared_by"] == "host"
    assert ports[closed].data["state"] == "closed"
    assert ports[3389].data["high_risk"] and ports[3389].data["state"] == "closed"
    (host,) = [o for o in obs if o.kind == "host"]
    assert host.data["reachable"] is True and host.data["open_ports"] == [port]


async def test_http_redirect_chain_headers_and_digest(runners: list[web.AppRunner]) -> None:
    async def final(_: web.Request) -> web.Response:
        return web.Response(text="hello", headers={"Server": "nginx/1.18.0", "Strict-Transport-Security": "max-age=1"})

    runner, port = await serve(IP, final)
    runners.append(runner)

    async def hop(_: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{IP}:{port}/final")

    runner2, port2 = await serve(IP, hop)
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

    runner_out, port_out = await serve(OTHER, outside)
    runners.append(runner_out)

    async def hop(_: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(f"http://{OTHER}:{port_out}/")

    runner, port = await serve(IP, hop)
    runners.append(runner)
    (obs,) = await run_probe(HttpProbe, system({"url": f"http://{IP}:{port}/"}))
    assert obs.data["redirect.out_of_scope"] == f"http://{OTHER}:{port_out}/"
    assert hits == []


async def test_unreachable_and_timeout_are_error_observations(runners: list[web.AppRunner]) -> None:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    runner, port = await serve(IP, slow)
    runners.append(runner)
    dead = free_port(IP)
    settings = SETTINGS.model_copy(update={"http_timeout": 0.5})
    obs = await run_probe(HttpProbe, system({"url": f"http://{IP}:{port}/"}, {"url": f"http://{IP}:{dead}/"}), settings)
    kinds = {o.data["failed_url"]: o.data["error_kind"] for o in obs}
    assert kinds == {f"http://{IP}:{port}/": "timeout", f"http://{IP}:{dead}/": "connect"}
    assert all(o.status.value == "error" and o.data["reachable"] is False and o.error for o in obs)


async def test_tls_facts_from_real_handshakes(tmp_path: Path, runners: list[web.AppRunner]) -> None:
    ca = TestCA(tmp_path)
    good = ca.issue("good", [IP])
    wrong_name = ca.issue("wrong", ["other.example"])

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    def server_ctx(files: object, legacy: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(files.cert, files.key)  # type: ignore[attr-defined]
        if legacy:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1
        return ctx

    r1, p_good = await serve(IP, ok, server_ctx(good))
    r2, p_wrong = await serve(IP, ok, server_ctx(wrong_name))
    r3, p_legacy = await serve(IP, ok, server_ctx(good, legacy=True))
    runners.extend([r1, r2, r3])
    trusting = SETTINGS.model_copy(update={"tls": TlsOptions(ca_file=ca.files.cert)})
    eps = [{"url": f"https://{IP}:{p}/"} for p in (p_good, p_wrong, p_legacy)]
    obs = {o.data["port"]: o for o in await run_probe(TlsProbe, system(*eps), trusting)}
    g, w, legacy = obs[p_good].data, obs[p_wrong].data, obs[p_legacy].data
    assert g["chain.valid"] is True and g["cert.hostname_match"] is True and g["cert.self_signed"] is False
    assert g["tls.protocol"] in ("TLSv1.2", "TLSv1.3") and 360 < g["cert.days_to_expiry"] <= 365
    assert w["cert.hostname_match"] is False and w["chain.valid"] is True
    if legacy.get("tls.protocol") is None:
        pytest.skip("this OpenSSL build cannot negotiate TLS 1.0 even at SECLEVEL=0")
    assert legacy["tls.protocol"] == "TLSv1"
    # Without the CA file the same chain does not validate.
    (untrusted,) = await run_probe(TlsProbe, system({"url": f"https://{IP}:{p_good}/"}))
    assert untrusted.data["chain.valid"] is False and "certificate" in untrusted.data["chain.error"]


async def test_the_shared_http_session_refuses_out_of_scope_literals(runners: list[web.AppRunner]) -> None:
    """aiohttp skips the resolver for IP literals; the session's request hook must still refuse them."""
    from sentinel.collectors.network import OutOfScope

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="should not be reached")

    runner, port = await serve(OTHER, ok)
    runners.append(runner)
    net = ScopedNetwork(SCOPE, SETTINGS)
    try:
        with pytest.raises(OutOfScope):
            async with net.http_session().get(f"http://{OTHER}:{port}/"):
                pass
    finally:
        await net.close()
