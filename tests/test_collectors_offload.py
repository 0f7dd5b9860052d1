"""`offload.run_cpu`: CPU-heavy analysis in a worker process, with the same result as in the event loop's process,
and a fall-back to a thread when a worker dies; the web_integrity probe reports the same observation whether its
page was analysed in place or in a worker."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sentinel.collectors import offload, web_integrity
from sentinel.collectors.base import ProbeJob
from sentinel.collectors.html_analysis import KeywordSet, analyse_page
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.web_integrity import WebIntegrityProbe
from sentinel.config.settings import CollectorSettings
from sentinel.demo.estate import free_port
from sentinel.registry.scope import Scope

HOST = "127.0.0.1"


def page(links: int = 300) -> str:
    """A page of some 25 KB with visible and hidden links, keywords, scripts and an iframe."""
    items = "".join(f'<li><a href="/news/{i}.html">新闻 {i} 2026-01-{1 + i % 28:02d}</a></li>' for i in range(links))
    return (
        "<html><head><title>某市政府</title><style>.x{display:none}</style>"
        '<script src="https://cdn.example.net/a.js"></script></head><body>'
        f'<ul>{items}</ul><div class="x"><a href="http://spam.example.com/">博彩 bet365</a></div>'
        '<div style="position:absolute;left:-9999px"><a href="http://casino.example.org/">casino</a></div>'
        '<iframe src="https://ads.example.org/f"></iframe><p>访问量：12345</p></body></html>'
    )


def _pid() -> int:
    return os.getpid()


def _dies_in_a_worker(parent: int) -> str:
    if os.getpid() != parent:
        os._exit(3)  # a worker that crashes
    return "ran in a thread"


async def test_work_runs_in_another_process_with_the_same_result() -> None:
    assert await offload.run_cpu(_pid) != os.getpid()
    links, sensitive = KeywordSet(["博彩", "bet365", "casino"]), KeywordSet(["色情"])
    args = (page(), "https://portal.example.gov.cn/", ["portal.example.gov.cn"], links, sensitive, 8000)
    assert await offload.run_cpu(analyse_page, *args) == analyse_page(*args)


async def test_a_dead_worker_falls_back_to_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offload, "_WORKERS", offload._Workers())  # a pool of its own: the shared one stays sound
    assert await offload.run_cpu(_dies_in_a_worker, os.getpid()) == "ran in a thread"
    assert await offload.run_cpu(_pid) == os.getpid()  # from then on, threads


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text=page(), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(HOST)
    await web.TCPSite(runner, HOST, port).start()
    yield f"http://{HOST}:{port}/"
    await runner.cleanup()


async def test_web_integrity_reports_the_same_in_place_and_in_a_worker(
    site: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = CollectorSettings(per_target_rate=100, per_target_burst=10)
    net = ScopedNetwork(Scope(allow=["127.0.0.0/8"]), settings, raw_sockets=False)
    probe = WebIntegrityProbe(settings)
    job = ProbeJob("web_integrity", "s", HOST, site, url=site, extra=(("own_hosts", HOST),))
    try:
        monkeypatch.setattr(web_integrity, "INLINE_PAGE_BYTES", 10**9)
        (in_place,) = await probe.run(job, net)
        monkeypatch.setattr(web_integrity, "INLINE_PAGE_BYTES", 0)
        (in_worker,) = await probe.run(job, net)
    finally:
        await net.close()
    assert in_place.status.value == "ok" and in_place.data["links.hidden_count"] == 2
    assert in_place.data == in_worker.data
