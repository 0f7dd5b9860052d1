"""SYN scan and ICMP echo against a namespace host: open / closed / filtered over IPv4 and IPv6, the same
answers as `nmap -sS` on that host."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sentinel.collectors.network import ScopedNetwork
from sentinel.config.settings import CollectorSettings
from sentinel.registry.scope import Scope
from tests.netns import Host, NetnsLab, netns_lab, require_tool, sh
from tests.support.port_listener import LISTENER

OPEN = (2222, 8443)
FILTERED = (9999, 3389)
CLOSED = (1234, 3306)
PORTS = sorted(OPEN + FILTERED + CLOSED)
V4, V6 = "198.18.212.10", "fd00:5e17::d4:10"
SETTINGS = CollectorSettings(connect_timeout=0.5, retries=1, per_target_rate=200, per_target_burst=20)


def pin_route(lab: NetnsLab, host: Host) -> None:
    """A host route through this lab's bridge: another lab running at the same time (same /16 on its own bridge)
    must not capture our packets."""
    sh("ip", "route", "replace", f"{host.ipv4}/32", "dev", lab.bridge)
    if host.ipv6:
        sh("ip", "-6", "route", "replace", f"{host.ipv6}/128", "dev", lab.bridge)


@pytest.fixture(scope="module")
def target() -> Iterator[Host]:
    with netns_lab() as lab:
        host = lab.add_host(V4, V6)
        pin_route(lab, host)
        proc = host.popen(sys.executable, "-c", LISTENER, *map(str, OPEN), stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        host.drop_tcp_ports(FILTERED)
        yield host


def nmap_states(address: str) -> dict[int, str]:
    nmap = require_tool("nmap")
    args = [nmap, "-sS", "-Pn", "-n", "-T4", "-p", ",".join(map(str, PORTS)), "-oG", "-", address]
    if ":" in address:
        args.insert(1, "-6")
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout
    return {int(p): s for p, s in re.findall(r"(\d+)/(open|closed|filtered)/tcp", out)}


@pytest.mark.parametrize("address", [V4, V6])
async def test_syn_scan_matches_nmap(target: Host, address: str) -> None:
    net = ScopedNetwork(Scope(allow=["198.18.212.0/24", "fd00:5e17::d4:0/112"]), SETTINGS)
    try:
        assert net.port_scan_method == "tcp-syn"
        method, answers = await net.port_states(address, PORTS)
        rtt = await net.icmp_echo(address)
    finally:
        await net.close()
    assert method == "tcp-syn"
    ours = {port: state.value for port, (state, _) in zip(PORTS, answers, strict=True)}
    expected = {p: "open" for p in OPEN} | {p: "filtered" for p in FILTERED} | {p: "closed" for p in CLOSED}
    assert ours == expected
    assert ours == nmap_states(address)
    assert all(r is not None for (s, r) in answers if s.value != "filtered")
    assert rtt is not None and 0 <= rtt < 500
    # retries: each filtered port was tried twice, every answered port once (plus one echo)
    assert net.sent[address] == len(PORTS) + len(FILTERED) + 1


async def test_down_host_is_unreachable_by_icmp_and_all_filtered(target: Host) -> None:
    with netns_lab() as lab:
        host = lab.add_host("198.18.212.20", "fd00:5e17::d4:20")
        pin_route(lab, host)
        host.run("nft", "add", "table", "inet", "lab")
        host.run("nft", "add", "chain", "inet", "lab", "input", "{ type filter hook input priority 0 ; policy drop ; }")
        net = ScopedNetwork(Scope(allow=["198.18.212.0/24", "fd00:5e17::d4:0/112"]), SETTINGS)
        try:
            for address in (host.ipv4, host.ipv6):
                assert address is not None
                assert await net.icmp_echo(address) is None
                _, answers = await net.port_states(address, [22, 80])
                assert [s.value for s, _ in answers] == ["filtered", "filtered"]
        finally:
            await net.close()
