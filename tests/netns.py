"""Test hosts in network namespaces that the tests make themselves (root + iproute2).

Topology: one Linux bridge in the root namespace holding 198.18.0.1/16 and fd00:5e17::1/64
(198.18.0.0/15 is the RFC 2544 benchmarking range: no real host lives there). Each test host is
a namespace joined to the bridge by a veth pair, with its own address(es) and a default route
back to the bridge. Sentinel runs in the root namespace and reaches hosts only through the
bridge; nothing is routed off the machine.

Off CI, tests that need this skip with a reason; on CI (CI=true) they fail instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

BRIDGE_V4 = "198.18.0.1"
BRIDGE_V6 = "fd00:5e17::1"
LAB_V4_NET = "198.18.0.0/16"
LAB_V6_NET = "fd00:5e17::/64"


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip with a reason off CI; fail on CI, where every prerequisite is installed."""
    if condition:
        return
    if on_ci():
        pytest.fail(f"prerequisite missing on CI: {reason}")
    pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root to build network namespaces")
    require(shutil.which("ip") is not None, "needs iproute2 ('ip')")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"needs the '{name}' tool (installed by .ci/setup)")
    assert path is not None
    return path


def sh(*args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Host:
    name: str  # namespace name
    ipv4: str
    ipv6: str | None
    lab: NetnsLab = field(repr=False)

    def cmd(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return sh(*self.cmd(*args), check=check, timeout=timeout)

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.cmd(*args), **kwargs)  # type: ignore[call-overload]
        self.lab.processes.append(proc)
        return proc  # type: ignore[no-any-return]

    def drop_tcp_ports(self, ports: Sequence[int]) -> None:
        """Make ports 'filtered': packets to them vanish (no RST), via nftables or iptables in the namespace."""
        if shutil.which("nft"):
            self.run("nft", "add", "table", "inet", "lab")
            self.run("nft", "add", "chain", "inet", "lab", "input", "{ type filter hook input priority 0 ; }")
            for port in ports:
                self.run("nft", "add", "rule", "inet", "lab", "input", "tcp", "dport", str(port), "drop")
        else:
            for port in ports:
                self.run("iptables", "-A", "INPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP")

    def drop_all(self) -> None:
        """Make the whole host silent (a 'down' host that still holds its address)."""
        self.run("ip", "link", "set", self.lab.veth_inside(self), "down")


class NetnsLab:
    """Creates namespaces on demand; everything is torn down on exit, even after a failure."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:5]
        self.bridge = f"sbr{self.tag}"
        self.hosts: list[Host] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._counter = 0

    def veth_inside(self, host: Host) -> str:
        return f"e{host.name[-7:]}"

    def __enter__(self) -> NetnsLab:
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{BRIDGE_V4}/16", "dev", self.bridge)
        sh("ip", "-6", "addr", "add", f"{BRIDGE_V6}/64", "dev", self.bridge, "nodad")
        sh("ip", "link", "set", self.bridge, "up")
        return self

    def add_host(self, ipv4: str, ipv6: str | None = None) -> Host:
        self._counter += 1
        name = f"s{self.tag}h{self._counter:03d}"
        host = Host(name, ipv4, ipv6, self)
        outside, inside = f"v{self.tag}{self._counter:03d}", self.veth_inside(host)
        sh("ip", "netns", "add", name)
        self.hosts.append(host)
        sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", name)
        sh("ip", "link", "set", outside, "master", self.bridge, "up")
        host.run("ip", "link", "set", "lo", "up")
        host.run("ip", "addr", "add", f"{ipv4}/16", "dev", inside)
        if ipv6:
            host.run("ip", "-6", "addr", "add", f"{ipv6}/64", "dev", inside, "nodad")
        host.run("ip", "link", "set", inside, "up")
        # Host routes through this lab's own bridge, so two labs up at once never capture each other's packets.
        sh("ip", "route", "replace", f"{ipv4}/32", "dev", self.bridge)
        if ipv6:
            sh("ip", "-6", "route", "replace", f"{ipv6}/128", "dev", self.bridge)
        host.run("ip", "route", "add", "default", "via", BRIDGE_V4)
        if ipv6:
            host.run("ip", "-6", "route", "add", "default", "via", BRIDGE_V6)
        return host

    def __exit__(self, *_: object) -> None:
        for proc in self.processes:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        for host in self.hosts:
            sh("ip", "netns", "pids", host.name, check=False)
            pids = sh("ip", "netns", "pids", host.name, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(int(pid), 9)
            sh("ip", "netns", "del", host.name, check=False)
        sh("ip", "link", "del", self.bridge, check=False)


@contextlib.contextmanager
def netns_lab() -> Iterator[NetnsLab]:
    require_root()
    with NetnsLab() as lab:
        yield lab
