"""The http probe against real servers: HTTP errors are findings (debounced, resolved only by a good status),
latency_ms agrees with curl's time_total, and a TLS 1.0-only site is reachable (issue 11 defects 4, 5, 10b)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from sentinel.collectors.http_poll import HttpProbe
from sentinel.collectors.http_security import HttpSecurityProbe
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, run_job, run_sweep_jobs
from sentinel.collectors.web_integrity import WebIntegrityProbe
from sentinel.config.settings import CollectorSettings
from sentinel.demo.certs import self_signed
from sentinel.demo.estate import free_port
from sentinel.engine.anomaly import AnomalyEngine
from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet, Verdict
from sentinel.models import Observation
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Owner, Registry, System, Tier
from sentinel.registry.scope import Scope
from tests.netns import require, require_tool

IP = "127.83.0.10"
NET = "127.83.0.0/24"
SCOPE = Scope(allow=[NET])
SETTINGS = CollectorSettings(connect_timeout=1.0, http_timeout=5.0, per_target_rate=500, per_target_burst=200)
RULES = {r.id: r for r in load_rules([shipped_rules_dir()])}
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def system(*urls: str) -> System:
    return System.model_validate(
        {
            "id": "gov-site",
            "name": "City portal",
            "owner": Owner(department="IT"),
            "tier": Tier.CITY,
            "mlps_level": 3,
            "tags": ["gov-website"],
            "endpoints": [{"url": u} for u in urls],
        }
    )


async def probe_once(url: str, net: ScopedNetwork | None = None, probe: Any = None) -> Observation:
    own = net is None
    net = net or ScopedNetwork(SCOPE, SETTINGS)
    probe = probe or HttpProbe(SETTINGS)
    try:
        (job,) = list(probe.plan(system(url)))
        (obs,) = await run_job(PlannedJob(probe, job), net, 30)
        return obs
    finally:
        if own:
            await net.close()


def fires(rule_id: str, obs: Observation) -> bool | None:
    return RULES[rule_id].evaluate(obs)


# -- servers ----------------------------------------------------------------------------------------------------
class Switchable:
    """An in-process server whose answer the test changes between sweeps (status code, or not listening)."""

    def __init__(self) -> None:
        self.status = 200
        self.port = free_port(IP)
        self.runner: web.AppRunner | None = None
        self.headers: dict[str, str] = {}

    async def handle(self, _: web.Request) -> web.Response:
        return web.Response(status=self.status, text=f"answer {self.status}", headers=self.headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, IP, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://{IP}:{self.port}/"


@pytest.fixture
async def site() -> AsyncIterator[Switchable]:
    server = Switchable()
    await server.start()
    yield server
    await server.stop()


@contextlib.contextmanager
def lab_server(port: int, addresses: list[str], *extra: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.http_lab_server", str(port), *addresses, *extra],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(5)


async def curl_ms(url: str, *extra: str) -> float:
    """curl's time_total for one GET (no redirects followed), in ms; run without blocking the test loop."""
    proc = await asyncio.create_subprocess_exec(
        require_tool("curl"),
        "-s",
        "-k",
        "-o",
        "/dev/null",
        "-w",
        "%{time_total}",
        "--max-time",
        "10",
        *extra,
        url,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 15)
    return float(out.decode()) * 1000


def close_to(sentinel_ms: float, curl: float, slack_ms: float = 25.0) -> bool:
    """Within a factor of 2 either way, with an absolute slack for tiny figures."""
    return curl / 2 - slack_ms <= sentinel_ms <= curl * 2 + slack_ms


# -- defect 4: HTTP errors -------------------------------------------------------------------------------------
async def test_503_home_page_is_an_http_error_and_a_failed_availability_probe(site: Switchable) -> None:
    site.status = 503
    obs = await probe_once(site.url)
    assert obs.data["reachable"] is True and obs.data["status_code"] == 503
    assert obs.data["status_class"] == "5xx" and obs.data["http.ok"] is False and obs.data["available"] is False
    assert fires("http_server_error", obs) is True
    assert fires("http_client_error", obs) is None  # a 5xx says nothing about a client error
    assert fires("gov_site_availability_weekly", obs) is True  # the window rule counts it as a failed probe
    assert fires("endpoint_reachable", obs) is False  # it answered: reachable, but broken


async def test_404_on_a_registered_url_is_a_client_error(site: Switchable) -> None:
    site.status = 404
    obs = await probe_once(site.url)
    assert obs.data["status_class"] == "4xx" and obs.data["http.ok"] is False
    assert fires("http_client_error", obs) is True and fires("http_server_error", obs) is None
    assert fires("gov_site_availability_weekly", obs) is True


async def test_good_answer_reads_ok(site: Switchable) -> None:
    obs = await probe_once(site.url)
    assert obs.data["status_class"] == "2xx" and obs.data["http.ok"] is True and obs.data["available"] is True
    assert fires("http_server_error", obs) is False and fires("http_client_error", obs) is False
    assert fires("gov_site_availability_weekly", obs) is False


def outcome(verdicts: list[Verdict], rule_id: str) -> str:
    mine = [v for v in verdicts if v.rule.id == rule_id]
    return "unknown" if not mine else ("present" if any(v.present for v in mine) else "absent")


async def test_server_error_finding_is_debounced_and_resolves_only_on_a_good_status(site: Switchable) -> None:
    """Real observations of a real server through the stateful engine, one sweep after another."""
    rule = RULES["http_server_error"]
    sys_ = system(site.url)
    engine = AnomalyEngine(RuleSet([rule]), Registry(scope=SCOPE, systems=(sys_,)))
    seen: list[str] = []

    async def sweep(i: int) -> None:
        obs = await probe_once(site.url)
        at = T0 + timedelta(minutes=5 * i)
        obs = Observation(obs.kind, obs.system_id, obs.target, at, obs.probe, obs.status, obs.data, obs.error)
        seen.append(outcome(engine.evaluate([obs], at), rule.id))

    site.status = 502
    await sweep(0)  # one 5xx: pending (debounced by `for:`)
    await sweep(1)  # two in a row: the finding opens
    await site.stop()
    await sweep(2)  # connection refused: could not observe, the finding stays
    await site.start()
    site.status = 404
    await sweep(3)  # a 4xx does not show the server error is fixed
    site.status = 200
    await sweep(4)  # a good status resolves it
    assert seen == ["unknown", "present", "unknown", "unknown", "absent"]


async def test_circuit_opened_by_503_skips_later_probes_visibly(site: Switchable) -> None:
    site.status = 503
    site.headers = {"Retry-After": "120"}  # trips the target's circuit at once
    net = ScopedNetwork(SCOPE, SETTINGS)
    try:
        first = await probe_once(site.url, net)
        assert first.data["status_code"] == 503
        later = [
            await probe_once(site.url, net),
            await probe_once(site.url, net, WebIntegrityProbe(SETTINGS)),
            await probe_once(site.url, net, HttpSecurityProbe(SETTINGS)),
        ]
    finally:
        await net.close()
    for obs in later:
        assert obs.status.value == "error" and obs.data["error_kind"] == "circuit_open", (obs.probe, obs.data)
        assert "not probed" in (obs.error or "") or "backing off" in (obs.error or "")
        assert "reachable" not in obs.data and "available" not in obs.data and "status_code" not in obs.data
    for rule_id in ("http_server_error", "endpoint_reachable", "gov_site_availability_weekly", "http_client_error"):
        assert fires(rule_id, later[0]) is None  # skipped is "could not observe", never "fine"


# -- defect 5: latency -----------------------------------------------------------------------------------------
@pytest.fixture
def timing_lab() -> Iterator[tuple[int, list[str]]]:
    require_tool("curl")
    addresses = [f"127.83.1.{i}" for i in range(1, 21)]
    port = free_port(addresses[0])
    with lab_server(port, addresses):
        yield port, addresses


async def test_latency_matches_curl_for_fast_delayed_and_slow_body_answers(timing_lab: tuple[int, list[str]]) -> None:
    port, addresses = timing_lab
    scope = Scope(allow=["127.83.1.0/24"])
    figures: dict[str, tuple[float, float]] = {}
    for name, path in (("fast", "/a"), ("delay200", "/a?delay_ms=200"), ("slowbody300", "/slowbody?delay_ms=300")):
        url = f"http://{addresses[0]}:{port}{path}"
        net = ScopedNetwork(scope, SETTINGS)
        try:
            obs = await probe_once(url, net)
        finally:
            await net.close()
        curl = statistics.median([await curl_ms(url) for _ in range(3)])
        assert obs.status.value == "ok", obs.error
        figures[name] = (obs.data["latency_ms"], curl)
    print("latency vs curl (ms):", figures)
    assert all(close_to(s, c) for s, c in figures.values()), figures
    assert figures["delay200"][0] >= 190 and figures["slowbody300"][0] >= 290  # the whole answer is timed


async def test_latency_in_a_concurrent_sweep_excludes_queueing(timing_lab: tuple[int, list[str]]) -> None:
    """120 URLs at once, with a small connection pool and per-target rate limits, so probes wait for admission
    and for a connection; those waits are not the site's response time."""
    port, addresses = timing_lab
    settings = SETTINGS.model_copy(update={"per_target_rate": 20.0, "per_target_burst": 1.0, "max_connections": 8})
    net = ScopedNetwork(Scope(allow=["127.83.1.0/24"]), settings)
    probe = HttpProbe(settings)
    planned = []
    for address in addresses:
        for delay in (0, 200):
            for k in range(3):
                url = f"http://{address}:{port}/p{k}?delay_ms={delay}"
                (job,) = list(probe.plan(system(url)))
                planned.append(PlannedJob(probe, job))
    try:
        observations = await run_sweep_jobs(planned, net, settings.max_jobs, 60)
    finally:
        await net.close()
    assert all(o.status.value == "ok" for o in observations), [o.error for o in observations if o.error]
    for delay in (0, 200):
        mine = sorted(o.data["latency_ms"] for o in observations if o.target.endswith(f"delay_ms={delay}"))
        curl = statistics.median([await curl_ms(f"http://{addresses[0]}:{port}/x?delay_ms={delay}") for _ in range(3)])
        median, p90 = statistics.median(mine), mine[int(len(mine) * 0.9)]
        print(f"concurrent delay={delay}: sentinel median {median:.1f} p90 {p90:.1f} ms, curl {curl:.1f} ms")
        assert close_to(median, curl) and close_to(p90, curl, 50.0), (delay, median, p90, curl)


async def _hog(stop: asyncio.Event, chunks_ms: tuple[float, float] = (5.0, 20.0)) -> int:
    """Keep the event loop busy in 5-20 ms chunks of pure CPU (as a saturated sweep does) until `stop`."""
    rng = random.Random(5)
    rounds = 0
    while not stop.is_set():
        until = time.perf_counter() + rng.uniform(*chunks_ms) / 1000
        while time.perf_counter() < until:
            continue  # holds the event loop on purpose: the busy stretch is the point
        rounds += 1
        await asyncio.sleep(0)
    return rounds


async def test_latency_is_the_sites_while_the_event_loop_is_busy(timing_lab: tuple[int, list[str]]) -> None:
    """Issue 11 defect 5 at estate scale: a sweep of 80 URLs while another task hogs the loop in 5-20 ms chunks.
    Whatever the loop is doing, `latency_ms` is the site's time, as curl (another process) measures it."""
    port, addresses = timing_lab
    net = ScopedNetwork(Scope(allow=["127.83.1.0/24"]), SETTINGS)
    probe = HttpProbe(SETTINGS)
    planned = []
    for address in addresses:
        for delay in (0, 100):
            for k in range(2):
                (job,) = list(probe.plan(system(f"http://{address}:{port}/h{k}?delay_ms={delay}")))
                planned.append(PlannedJob(probe, job))
    stop = asyncio.Event()
    hog = asyncio.create_task(_hog(stop))
    try:
        # 8 at a time: the single-threaded lab server's own queue would be real time, but not curl's
        observations = await run_sweep_jobs(planned, net, 8, 60)
    finally:
        stop.set()
        rounds = await hog
        await net.close()
    assert rounds >= 10, rounds  # the loop really was busy during the sweep
    assert all(o.status.value == "ok" for o in observations), [o.error for o in observations if o.error]
    for delay in (0, 100):
        mine = sorted(o.data["latency_ms"] for o in observations if o.target.endswith(f"delay_ms={delay}"))
        curl = statistics.median([await curl_ms(f"http://{addresses[0]}:{port}/x?delay_ms={delay}") for _ in range(5)])
        median, p90 = statistics.median(mine), mine[int(len(mine) * 0.9)]
        print(f"busy loop delay={delay}: sentinel median {median:.1f} p90 {p90:.1f} ms, curl {curl:.1f} ms")
        assert close_to(median, curl, 5.0) and close_to(p90, curl, 10.0), (delay, median, p90, curl)
        assert all(
            o.data["timing.connect_ms"] <= o.data["timing.headers_ms"] <= o.data["latency_ms"]
            for o in observations
            if o.data["latency_ms"] in mine
        )


@pytest.fixture
def tls_timing_lab(tmp_path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """The lab server on 127.83.3.1-10 over HTTP and HTTPS: (http port, https port, addresses)."""
    require_tool("curl")
    addresses = [f"127.83.3.{i}" for i in range(1, 11)]
    cert = self_signed(tmp_path, "lab", addresses)
    port, tls_port = free_port(addresses[0]), free_port(addresses[0])
    with lab_server(port, addresses, "--tls", str(cert.cert), str(cert.key), str(tls_port)):
        yield port, tls_port, addresses


async def test_https_latency_is_the_sites_while_the_event_loop_is_busy(
    tls_timing_lab: tuple[int, int, list[str]],
) -> None:
    """The TLS handshake's round trips are the site's too; the client's turns between them are not."""
    _, tls_port, addresses = tls_timing_lab
    net = ScopedNetwork(Scope(allow=["127.83.3.0/24"]), SETTINGS)
    probe = HttpProbe(SETTINGS)
    planned = []
    for address in addresses:
        for k in range(4):
            (job,) = list(probe.plan(system(f"https://{address}:{tls_port}/t{k}")))
            planned.append(PlannedJob(probe, job))
    stop = asyncio.Event()
    hog = asyncio.create_task(_hog(stop))
    try:
        # 4 at a time: the single-threaded lab server's queue of TLS handshakes is real time, but not curl's
        observations = await run_sweep_jobs(planned, net, 4, 60)
    finally:
        stop.set()
        await hog
        await net.close()
    assert all(o.status.value == "ok" for o in observations), [o.error for o in observations if o.error]
    assert all(o.data["tls.handshake_ok"] is True and o.data["status_code"] == 200 for o in observations)
    mine = sorted(o.data["latency_ms"] for o in observations)
    curl = statistics.median([await curl_ms(f"https://{addresses[0]}:{tls_port}/x") for _ in range(5)])
    print(f"busy loop https: sentinel median {statistics.median(mine):.1f} p90 {mine[36]:.1f} ms, curl {curl:.1f} ms")
    assert close_to(statistics.median(mine), curl, 5.0) and close_to(mine[36], curl, 10.0), (mine, curl)
    for o in observations:
        assert 0 < o.data["timing.connect_ms"] <= o.data["timing.headers_ms"] <= o.data["latency_ms"], o.data


async def test_chunked_gzip_body_is_decoded_and_a_redirect_is_timed_like_curl(
    tls_timing_lab: tuple[int, int, list[str]],
) -> None:
    port, tls_port, addresses = tls_timing_lab
    from tests.http_lab_server import PAGE

    net = ScopedNetwork(Scope(allow=["127.83.3.0/24"]), SETTINGS)
    try:
        packed = await probe_once(f"https://{addresses[1]}:{tls_port}/gzip", net)
        moved_url = f"http://{addresses[2]}:{port}/redirect?to=/a%3Fdelay_ms%3D150"
        moved = await probe_once(moved_url, net)
    finally:
        await net.close()
    assert packed.status.value == "ok", packed.error
    assert packed.data["body_bytes"] == len(PAGE) and packed.data["body_truncated"] is False
    assert packed.data["body_sha256"] == hashlib.sha256(PAGE.encode()).hexdigest()
    assert moved.status.value == "ok", moved.error
    assert moved.data["redirect_count"] == 1 and moved.data["final_url"].endswith("/a?delay_ms=150")
    assert moved.data["status_code"] == 200
    curl = statistics.median([await curl_ms(moved_url) for _ in range(3)])  # curl without -L: the 302 alone
    assert close_to(moved.data["latency_ms"], curl, 5.0), (moved.data["latency_ms"], curl)
    assert moved.data["latency_ms"] < 100  # the first answer only, not the delayed page behind it


# -- defect 10b: TLS ------------------------------------------------------------------------------------------
@pytest.fixture
def tls10_server(tmp_path: Path) -> Iterator[int]:
    openssl = require_tool("openssl")
    cert = self_signed(tmp_path, "legacy", [IP])
    port = free_port(IP)
    legacy = ["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"]
    files = ["-cert", str(cert.cert), "-key", str(cert.key)]
    proc = subprocess.Popen(
        [openssl, "s_server", "-accept", f"{IP}:{port}", *legacy, *files, "-www", "-quiet", "-naccept", "20"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = [openssl, "s_client", "-connect", f"{IP}:{port}", *legacy]
        answer = ""
        for _ in range(50):  # bounded wait for the server to listen
            answer = subprocess.run(client, check=False, input="", capture_output=True, text=True, timeout=10).stdout
            if "Protocol" in answer or proc.poll() is not None:
                break
            time.sleep(0.1)
        require("TLSv1" in answer, f"the local OpenSSL cannot serve TLS 1.0: {answer[-300:]}")
        yield port
    finally:
        proc.kill()
        proc.wait(5)


async def test_tls10_only_site_is_reachable_and_its_page_observed(tls10_server: int) -> None:
    obs = await probe_once(f"https://{IP}:{tls10_server}/")
    assert obs.status.value == "ok", obs.error
    assert obs.data["reachable"] is True and obs.data["status_code"] == 200 and obs.data["http.ok"] is True
    assert obs.data["tls.handshake_ok"] is True
    assert fires("endpoint_reachable", obs) is False
    assert fires("https_tls_handshake_failed", obs) is False  # the TLS probes report the legacy protocol


async def test_failed_tls_handshake_is_reachable_and_says_what_failed(site: Switchable) -> None:
    # An https URL whose port speaks plain HTTP: TCP connects, the TLS handshake fails.
    obs = await probe_once(f"https://{IP}:{site.port}/")
    assert obs.status.value == "error" and obs.data["error_kind"] == "tls_handshake", obs.data
    assert obs.data["reachable"] is True and obs.data["tcp.connected"] is True
    assert obs.data["tls.handshake_ok"] is False and obs.data["tls.error"]
    assert obs.data["available"] is False
    assert fires("endpoint_reachable", obs) is False
    assert fires("https_tls_handshake_failed", obs) is True
    assert fires("gov_site_availability_weekly", obs) is True  # a browser cannot open it either
    assert fires("http_server_error", obs) is None


async def test_https_site_reports_a_completed_handshake(tmp_path: Path) -> None:
    import ssl

    cert = self_signed(tmp_path, "site", [IP])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert, cert.key)

    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(IP)
    await web.TCPSite(runner, IP, port, ssl_context=ctx).start()
    try:
        obs = await probe_once(f"https://{IP}:{port}/")
    finally:
        await runner.cleanup()
    assert obs.data["tls.handshake_ok"] is True and obs.data["tcp.connected"] is True
    assert obs.data["timing.connect_ms"] <= obs.data["timing.headers_ms"] <= obs.data["latency_ms"]
