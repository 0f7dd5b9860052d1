"""The port discovery probe (issue 11, defect 7): undeclared services are found actively, with nmap's top 1,000
TCP ports by default, inside the scope and the rate limits, and its verdicts are true: a silent host or a sweep
cut short proves nothing about closed ports."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.collectors import BUILTIN_PROBES, build_probes
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.port_discovery import PortDiscoveryOptions, PortDiscoveryProbe
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.collectors.top_ports import TOP_TCP_PORTS
from sentinel.config.settings import CollectorSettings, Settings, load_settings
from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet
from sentinel.errors import InputError
from sentinel.models import Observation
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Registry, System
from sentinel.registry.scope import Scope
from tests.netns import Host, netns_lab, require_tool
from tests.support.port_listener import LISTENER

V4, V6 = "198.18.63.10", "fd00:5e17::20:6310"
SILENT = "198.18.63.20"
OUTSIDE = "198.18.64.10"  # a lab host outside the scope
OPEN_DECLARED, OPEN_UNDECLARED, DROPPED = 22, 8081, (3389, 5900)
SCOPE = Scope(allow=["198.18.63.0/24", "fd00:5e17::20:0/112"])
FAST = CollectorSettings(connect_timeout=0.5, retries=1, per_target_packet_rate=1000, per_target_packet_burst=100)


@pytest.fixture(scope="module")
def lab() -> Iterator[Host]:
    with netns_lab() as lab:
        host = lab.add_host(V4, V6)
        ports = (OPEN_DECLARED, OPEN_UNDECLARED)
        proc = host.popen(sys.executable, "-c", LISTENER, *map(str, ports), stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        host.drop_tcp_ports(DROPPED)
        silent = lab.add_host(SILENT)
        silent.drop_all()
        outside = lab.add_host(OUTSIDE)
        outside.popen(sys.executable, "-c", LISTENER, str(OPEN_UNDECLARED), stdout=subprocess.DEVNULL)
        yield host


def system(address: str) -> System:
    return System.model_validate(
        {
            "id": "sys",
            "name": "S",
            "owner": {"department": "IT"},
            "tier": "city",
            "mlps_level": 3,
            "endpoints": [{"host": address, "ports": [OPEN_DECLARED]}],
        }
    )


async def discover(
    address: str, settings: CollectorSettings = FAST, scope: Scope = SCOPE
) -> tuple[Observation, ScopedNetwork]:
    probe = PortDiscoveryProbe(settings)
    net = ScopedNetwork(scope, settings)
    try:
        [job] = probe.plan(system(address))
        [obs] = await run_job(PlannedJob(probe, job), net, settings.job_timeout)
    finally:
        await net.close()
    return obs, net


def verdict(obs: Observation, address: str) -> bool | None:
    rules = RuleSet(load_rules([shipped_rules_dir() / "ports"]))
    registry = Registry(systems=[system(address)], scope=SCOPE)
    found = [v.present for v in rules.evaluate_stateless([obs], registry) if v.rule.id == "port_undeclared_open"]
    return found[0] if found else None


def nmap_open(address: str, *args: str) -> list[int]:
    cmd = [require_tool("nmap"), "-sS", "-Pn", "-n", "-T4", *args, "-oG", "-", address]
    if ":" in address:
        cmd.insert(1, "-6")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout
    return sorted(int(p) for p in re.findall(r"(\d+)/open/tcp", out))


def test_default_ports_are_nmaps_top_1000() -> None:
    out = subprocess.run(
        [
            require_tool("nmap"),
            "-sT",
            "-Pn",
            "-n",
            "--top-ports",
            "1000",
            "--max-retries",
            "0",
            "-oX",
            "-",
            "127.0.0.1",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    match = re.search(r'protocol="tcp" numservices="1000" services="([^"]+)"', out)
    assert match, out[:500]
    theirs: set[int] = set()
    for part in match.group(1).split(","):
        low, _, high = part.partition("-")
        theirs.update(range(int(low), int(high or low) + 1))
    assert len(TOP_TCP_PORTS) == len(set(TOP_TCP_PORTS)) == 1000
    assert set(TOP_TCP_PORTS) == theirs
    assert PortDiscoveryProbe(CollectorSettings()).ports() == TOP_TCP_PORTS


async def test_top_1000_finds_the_undeclared_port_like_nmap(lab: Host) -> None:
    obs, net = await discover(V4)
    data = obs.data
    assert obs.status.value == "ok" and data["method"] == "tcp-syn"
    assert data["complete"] is True and data["ports_probed"] == 1000
    assert data["open_ports"] == [OPEN_DECLARED, OPEN_UNDECLARED]
    assert data["open_ports"] == nmap_open(V4, "--top-ports", "1000")
    assert data["filtered_count"] == len(DROPPED) and data["closed_count"] == 1000 - 2 - len(DROPPED)
    assert data["undeclared_open"] == [OPEN_UNDECLARED] and data["undeclared_open_count"] == 1
    assert net.sent[V4] == 1000 + len(DROPPED)  # one SYN per port, a retry per silent port: all admitted
    assert verdict(obs, V4) is True


async def test_ipv6_and_a_configured_port_list(lab: Host) -> None:
    ports = [OPEN_DECLARED, OPEN_UNDECLARED, *DROPPED, 1234]
    obs, _ = await discover(V6, FAST.model_copy(update={"port_discovery": PortDiscoveryOptions(ports=ports)}))
    assert obs.data["ports_planned"] == len(ports)
    assert obs.data["open_ports"] == nmap_open(V6, "-p", ",".join(map(str, ports))) == [22, 8081]
    assert obs.data["undeclared_open"] == [OPEN_UNDECLARED]


async def test_only_declared_ports_open_resolves(lab: Host) -> None:
    obs, _ = await discover(
        V4, FAST.model_copy(update={"port_discovery": PortDiscoveryOptions(ports=[OPEN_DECLARED, 1234, 1235])})
    )
    assert obs.data["undeclared_open_count"] == 0
    assert verdict(obs, V4) is False


async def test_a_silent_host_proves_nothing(lab: Host) -> None:
    obs, _ = await discover(
        SILENT, FAST.model_copy(update={"port_discovery": PortDiscoveryOptions(ports=[22, 80, 8081])})
    )
    assert obs.data["answered"] is False and obs.data["filtered_count"] == 3
    assert "undeclared_open_count" not in obs.data
    assert verdict(obs, SILENT) is None  # unknown: an open finding stays open


async def test_a_sweep_cut_short_reports_what_it_saw_and_claims_nothing_else(lab: Host) -> None:
    slow = FAST.model_copy(update={"per_target_packet_rate": 100, "per_target_packet_burst": 1, "job_timeout": 4.0})
    obs, _ = await discover(V4, slow)
    assert obs.status.value == "ok"  # it finished inside the job timeout, with what it had
    assert obs.data["complete"] is False and 0 < obs.data["ports_probed"] < 1000
    assert ("undeclared_open_count" in obs.data) == bool(obs.data["undeclared_open"])


async def test_out_of_scope_host_gets_no_packet(lab: Host) -> None:
    obs, net = await discover(OUTSIDE)
    assert obs.status.value == "error" and obs.data["error_kind"] == "out_of_scope"
    assert net.sent[OUTSIDE] == 0 and net.raw_packets_sent == 0


def test_registered_scheduled_daily_and_not_in_a_plain_scan(tmp_path: Path) -> None:
    assert BUILTIN_PROBES["port_discovery"] is PortDiscoveryProbe
    settings = Settings()
    assert "port_discovery" not in settings.collectors.probes  # a plain `sentinel scan` stays quick
    assert "port_discovery" in settings.run.extra_probes
    assert settings.run.intervals["port_discovery"] == 86400
    [probe] = build_probes(settings.collectors.model_copy(update={"probes": ["port_discovery"]}))
    assert isinstance(probe, PortDiscoveryProbe)
    config = tmp_path / "sentinel.yaml"
    config.write_text("collectors:\n  discovery_ports: [22, 70000]\n")
    with pytest.raises(InputError, match="1-65535: 70000"):
        load_settings(config)
