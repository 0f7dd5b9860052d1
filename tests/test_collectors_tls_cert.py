"""The tls probe against real Python ssl servers with generated certificates: chain, hostname, protocol, expiry."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiohttp import web

from sentinel.collectors.tls_cert import TlsOptions, TlsProbe
from sentinel.demo.certs import TestCA
from tests.support.loopback_http import serve_on
from tests.support.probe_runs import IP, SETTINGS, run_probe, system


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

    r1, p_good = await serve_on(IP, ok, server_ctx(good))
    r2, p_wrong = await serve_on(IP, ok, server_ctx(wrong_name))
    r3, p_legacy = await serve_on(IP, ok, server_ctx(good, legacy=True))
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
