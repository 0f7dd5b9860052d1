"""Host reachability from tcp_ports (issue 11, defect 10c): a host whose TCP ports are all filtered but which
answers ICMP echo is up, as in nmap's host discovery; only a host silent to both is reported unreachable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.collectors.tcp_ports import TcpPortProbe
from sentinel.config.settings import CollectorSettings
from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet
from sentinel.models import Observation
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Registry, System
from sentinel.registry.scope import Scope
from tests.netns import Host, netns_lab

TCP_DROPPED = ("198.18.61.10", "fd00:5e17::20:6110")  # drops all TCP, answers echo
SILENT = ("198.18.61.20", "fd00:5e17::20:6120")  # drops everything
SCOPE = Scope(allow=["198.18.61.0/24", "fd00:5e17::20:0/112"])
SETTINGS = CollectorSettings(connect_timeout=0.5, retries=1, tcp_ports={"high_risk_ports": [3306, 3389]})


def _drop(host: Host, rule: str) -> None:
    host.run("nft", "add", "table", "inet", "lab")
    host.run("nft", "add", "chain", "inet", "lab", "input", "{ type filter hook input priority 0 ; }")
    host.run("nft", "add", "rule", "inet", "lab", "input", *rule.split())


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    with netns_lab() as lab:
        _drop(lab.add_host(*TCP_DROPPED), "meta l4proto tcp drop")
        _drop(lab.add_host(*SILENT), "drop")
        yield


def system(address: str) -> System:
    return System.model_validate(
        {
            "id": "sys",
            "name": "S",
            "owner": {"department": "IT"},
            "tier": "city",
            "mlps_level": 3,
            "endpoints": [{"host": address, "ports": [22, 443]}],
        }
    )


async def host_observation(address: str, raw_sockets: bool | None = None) -> tuple[Observation, bool | None]:
    probe = TcpPortProbe(SETTINGS)
    net = ScopedNetwork(SCOPE, SETTINGS, raw_sockets=raw_sockets)
    try:
        [job] = probe.plan(system(address))
        observations = await run_job(PlannedJob(probe, job), net, 30)
    finally:
        await net.close()
    [host] = [o for o in observations if o.kind == "host"]
    assert {o.data["state"] for o in observations if o.kind == "port"} == {"filtered"}
    rules = RuleSet(load_rules([shipped_rules_dir() / "availability"]))
    registry = Registry(systems=[system(address)], scope=SCOPE)
    fired = {v.present for v in rules.evaluate_stateless([host], registry) if v.rule.id == "endpoint_reachable"}
    return host, (fired.pop() if fired else None)


@pytest.mark.parametrize("address", TCP_DROPPED)
async def test_all_ports_filtered_but_answers_echo_is_reachable(lab: None, address: str) -> None:
    host, unreachable = await host_observation(address)
    assert host.data["reachable"] is True
    assert host.data["reachable_by"] == "icmp-echo"
    assert isinstance(host.data["icmp_rtt_ms"], float)
    assert unreachable is False  # endpoint_reachable does not fire


@pytest.mark.parametrize("address", SILENT)
async def test_silent_to_tcp_and_icmp_is_unreachable(lab: None, address: str) -> None:
    host, unreachable = await host_observation(address)
    assert host.data["reachable"] is False
    assert host.data["reachable_by"] is None
    assert host.data["icmp_rtt_ms"] is None  # the echo was asked, and went unanswered
    assert unreachable is True


async def test_without_raw_sockets_no_echo_is_claimed(lab: None) -> None:
    host, _ = await host_observation(TCP_DROPPED[0], raw_sockets=False)
    assert host.data["method"] == "tcp-connect"
    assert host.data["reachable"] is False and "icmp_rtt_ms" not in host.data  # nothing claims an echo was asked
