"""nmap as the peer reference: Sentinel's port states equal nmap's on the same namespace host, for the SYN scan
(`nmap -sS`) through the tcp_ports probe and for the connect scan (`nmap -sT`), over IPv4 and IPv6 (`-6`).
Any disagreement fails CI."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.collectors.tcp_ports import TcpPortProbe
from sentinel.config.settings import CollectorSettings
from sentinel.registry.models import System
from sentinel.registry.scope import Scope
from tests.netns import Host, netns_lab, require_tool
from tests.support.port_listener import LISTENER

V4, V6 = "198.18.62.10", "fd00:5e17::20:6210"
OPEN, FILTERED, CLOSED = (2222, 8443), (9999, 3389), (1234, 3306)
PORTS = sorted(OPEN + FILTERED + CLOSED)
EXPECTED = {p: "open" for p in OPEN} | {p: "filtered" for p in FILTERED} | {p: "closed" for p in CLOSED}
SCOPE = Scope(allow=["198.18.62.0/24", "fd00:5e17::20:0/112"])
SETTINGS = CollectorSettings(connect_timeout=0.5, retries=1, tcp_ports={"high_risk_ports": [3306, 3389]})


@pytest.fixture(scope="module")
def target() -> Iterator[Host]:
    with netns_lab() as lab:
        host = lab.add_host(V4, V6)
        proc = host.popen(sys.executable, "-c", LISTENER, *map(str, OPEN), stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        host.drop_tcp_ports(FILTERED)
        yield host


def nmap(address: str, scan: str) -> dict[int, str]:
    args = [require_tool("nmap"), scan, "-Pn", "-n", "-T4", "-p", ",".join(map(str, PORTS)), "-oG", "-", address]
    if ":" in address:
        args.insert(1, "-6")
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout
    return {int(p): s for p, s in re.findall(r"(\d+)/(open|closed|filtered)/tcp", out)}


def registered(address: str) -> System:
    return System.model_validate(
        {
            "id": "peer",
            "name": "Peer",
            "owner": {"department": "IT"},
            "tier": "city",
            "mlps_level": 3,
            "endpoints": [{"host": address, "ports": [2222, 8443, 9999, 1234]}],
        }
    )


@pytest.mark.parametrize("address", [V4, V6])
async def test_syn_scan_through_tcp_ports_agrees_with_nmap_syn(target: Host, address: str) -> None:
    probe = TcpPortProbe(SETTINGS)
    net = ScopedNetwork(SCOPE, SETTINGS)
    try:
        [job] = probe.plan(registered(address))
        assert list(job.ports) == PORTS
        observations = await run_job(PlannedJob(probe, job), net, 30)
    finally:
        await net.close()
    ports = [o for o in observations if o.kind == "port"]
    assert {o.data["method"] for o in ports} == {"tcp-syn"}
    ours = {int(o.data["port"]): str(o.data["state"]) for o in ports}
    assert ours == EXPECTED
    assert ours == nmap(address, "-sS")


@pytest.mark.parametrize("address", [V4, V6])
async def test_connect_scan_agrees_with_nmap_connect(target: Host, address: str) -> None:
    net = ScopedNetwork(SCOPE, SETTINGS.model_copy(update={"scan_method": "connect"}))
    try:
        method, answers = await net.port_states(address, PORTS)
    finally:
        await net.close()
    assert method == "tcp-connect"
    ours = {port: state.value for port, (state, _) in zip(PORTS, answers, strict=True)}
    assert ours == EXPECTED
    assert ours == nmap(address, "-sT")
