"""The per-target circuit breaker: trips on failures, 5xx bursts and 429/Retry-After, and recovers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.circuit_breaker import CircuitBreaker, CircuitOpen, CircuitState, parse_retry_after
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.config.settings import CollectorSettings
from sentinel.demo.estate import free_port
from sentinel.models import Observation
from sentinel.registry.models import System
from sentinel.registry.scope import Scope

IP = "127.81.0.10"
SETTINGS = CollectorSettings(connect_timeout=1.0, per_target_rate=1000, per_target_burst=100)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_consecutive_failures_trip_and_half_open_success_recovers() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, base_backoff=5, clock=clock)
    for _ in range(2):
        breaker.record_failure("t")
    breaker.check("t")  # two failures: still closed
    breaker.record_failure("t")
    assert breaker.state("t") == CircuitState.OPEN
    with pytest.raises(CircuitOpen, match="3 consecutive"):
        breaker.check("t")
    breaker.check("other")  # per target: other targets are not affected
    clock.now += 5.1
    assert breaker.state("t") == CircuitState.HALF_OPEN
    breaker.check("t")
    breaker.record_success("t")
    assert breaker.state("t") == CircuitState.CLOSED


def test_failure_while_half_open_reopens_with_a_longer_backoff() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, base_backoff=5, max_backoff=60, clock=clock)
    breaker.record_failure("t")
    clock.now += 5.1
    breaker.record_failure("t")  # the half-open trial failed
    clock.now += 9
    assert breaker.state("t") == CircuitState.OPEN  # backed off for 10 s this time, not 5
    clock.now += 1.1
    assert breaker.state("t") == CircuitState.HALF_OPEN


def test_retry_after_and_server_error_bursts() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(server_error_burst=3, burst_window=10, clock=clock)
    breaker.record_status("a", 429, "30")
    clock.now += 29
    assert breaker.state("a") == CircuitState.OPEN
    clock.now += 1.5
    assert breaker.state("a") == CircuitState.HALF_OPEN
    breaker.record_status("b", 500)
    breaker.record_status("b", 502)
    clock.now += 11  # the first two fall out of the window
    breaker.record_status("b", 500)
    assert breaker.state("b") == CircuitState.CLOSED
    breaker.record_status("b", 503)
    breaker.record_status("b", 500)
    assert breaker.state("b") == CircuitState.OPEN


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after((now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT"), now) == 90
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.fixture
async def flaky_server() -> AsyncIterator[tuple[str, list[int]]]:
    """Answers with the statuses queued in the list (then 200), with Retry-After on 429."""
    statuses: list[int] = []

    async def handler(_: web.Request) -> web.Response:
        status = statuses.pop(0) if statuses else 200
        return web.Response(status=status, headers={"Retry-After": "2"} if status == 429 else {})

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port(IP)
    await web.TCPSite(runner, IP, port).start()
    yield f"http://{IP}:{port}/", statuses
    await runner.cleanup()


async def poll(net: ScopedNetwork, url: str) -> int:
    """What the HTTP probe does: admit, request, report the status to the breaker."""
    await net.admit(IP)
    async with net.http_session().get(url) as resp:
        net.report_http_status(IP, resp.status, resp.headers.get("Retry-After"))
        return resp.status


async def test_real_server_429_opens_the_circuit_and_it_recovers(flaky_server: tuple[str, list[int]]) -> None:
    url, statuses = flaky_server
    clock = FakeClock()
    net = ScopedNetwork(Scope(allow=["127.81.0.0/24"]), SETTINGS, breaker=CircuitBreaker(clock=clock))
    try:
        statuses.extend([500, 500, 500, 500, 500])
        for _ in range(5):
            assert await poll(net, url) == 500
        with pytest.raises(CircuitOpen, match="5 HTTP 5xx"):
            await poll(net, url)
        clock.now += 5.1
        assert await poll(net, url) == 200  # half-open trial succeeds: closed again
        assert net.breaker.state(IP) == CircuitState.CLOSED
        statuses.append(429)
        assert await poll(net, url) == 429
        sent = net.sent[IP]
        with pytest.raises(CircuitOpen, match="Retry-After 2"):
            await net.syn_state(IP, 80) if net.raw_sockets else await net.tcp_state(IP, 80)
        assert net.sent[IP] == sent  # nothing admitted while open: raw packets and connections alike
        clock.now += 2.1
        assert await poll(net, url) == 200
    finally:
        await net.close()


class _Probe(Probe):
    name = "probe"
    kind = "port"

    def plan(self, system: System) -> list[ProbeJob]:
        return []

    async def run(self, job: ProbeJob, net: ScopedNetwork) -> list[Observation]:
        await net.admit(job.host)
        return []


async def test_an_open_circuit_becomes_an_error_observation() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    breaker.record_failure(IP)
    net = ScopedNetwork(Scope(allow=["127.81.0.0/24"]), SETTINGS, breaker=breaker)
    job = ProbeJob("probe", "sys", IP, IP)
    [obs] = await run_job(PlannedJob(_Probe(SETTINGS), job), net, 5)
    assert obs.status.value == "error"
    assert obs.data["error_kind"] == "circuit_open"
    assert "backing off" in (obs.error or "")
