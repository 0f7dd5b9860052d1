"""Network safety, proven with packet captures: nothing reaches out-of-scope hosts (names and redirects that
lead there included), a dry run sends nothing, and the achieved per-target packet rate stays within the
configured one. The out-of-scope host is another namespace host, so even a bug would not leave the machine."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sentinel.cli.main import main
from sentinel.collectors import build_probes
from sentinel.collectors.icmp_probe import IcmpEchoProbe
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import plan_sweep, run_sweep_jobs
from sentinel.collectors.tcp_ports import TcpPortOptions
from sentinel.config.settings import CollectorSettings
from sentinel.registry.loader import load_registry
from tests.netns import Host, NetnsLab, netns_lab, require_tool, sh

IN_V4, OUT_V4 = "198.18.213.10", "198.18.214.20"
SCOPE_ALLOW = ["198.18.213.0/24", "lab.test"]
FAST = CollectorSettings(connect_timeout=0.5, retries=1, http_timeout=3, per_target_rate=200, per_target_burst=20)

REDIRECTOR = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", sys.argv[1])
        self.end_headers()
    def log_message(self, *a):
        return None  # quiet: the test reads its packet capture, not the server's log
srv = HTTPServer(("0.0.0.0", 80), H)
print("ready", flush=True)
srv.serve_forever()
"""


def pin_route(lab: NetnsLab, host: Host) -> None:
    """A host route through this lab's bridge: another lab running at the same time (same /16 on its own bridge)
    must not capture our packets."""
    sh("ip", "route", "replace", f"{host.ipv4}/32", "dev", lab.bridge)
    if host.ipv6:
        sh("ip", "-6", "route", "replace", f"{host.ipv6}/128", "dev", lab.bridge)


class Capture:
    """tcpdump (every interface of the root namespace unless told) into a file, read back with timestamps."""

    def __init__(self, folder: Path, bpf: str, interface: str = "any") -> None:
        self.file = folder / "capture.pcap"
        self._proc = subprocess.Popen(
            [require_tool("tcpdump"), "-i", interface, "-n", "-U", "--immediate-mode", "-w", str(self.file), bpf],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self._proc.stderr is not None
        seen = ""
        while "listening on" not in seen:  # printed once the filter is attached and capture has begun
            line = self._proc.stderr.readline().decode()
            assert line, f"tcpdump did not start: {seen}"
            seen += line
        time.sleep(1.0)  # "listening on" comes a little before packets really reach the file

    def stop(self) -> None:
        time.sleep(0.5)  # let the last packets reach the file
        self._proc.terminate()
        self._proc.wait(timeout=10)

    def packets(self, bpf: str = "") -> list[tuple[float, str]]:
        args = ["tcpdump", "-r", str(self.file), "-n", "-tt", *([bpf] if bpf else [])]
        out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
        return [(float(line.split()[0]), line) for line in out.splitlines() if line.strip()]


@contextlib.contextmanager
def capture(folder: Path, bpf: str, interface: str = "any") -> Iterator[Capture]:
    cap = Capture(folder, bpf, interface)
    try:
        yield cap
    finally:
        cap.stop()


def serve(host: Host, script: str, *args: str) -> None:
    proc = host.popen(sys.executable, "-c", script, *args, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"


def write_registry(path: Path, systems: list[dict[str, Any]]) -> Path:
    for i, system in enumerate(systems):
        system.update(id=f"sys-{i}", name=f"System {i}", owner={"department": "IT"}, tier="city", mlps_level=3)
    path.write_text(yaml.safe_dump({"scope": {"allow": SCOPE_ALLOW}, "systems": systems}))
    return path


@pytest.fixture
def lab() -> Iterator[tuple[NetnsLab, Host, Host]]:
    with netns_lab() as lab:
        inside = lab.add_host(IN_V4)
        outside = lab.add_host(OUT_V4)  # a tempting target: listening, answering, and outside the scope
        pin_route(lab, inside)
        pin_route(lab, outside)
        serve(inside, REDIRECTOR, f"http://{OUT_V4}/")
        serve(outside, REDIRECTOR, f"http://{OUT_V4}/")
        yield lab, inside, outside


def stub_dns(monkeypatch: pytest.MonkeyPatch, names: dict[str, str]) -> None:
    """Names under lab.test resolve to namespace hosts (the in-scope suffix leading to an out-of-scope address)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


async def test_nothing_reaches_out_of_scope_hosts(
    lab: tuple[NetnsLab, Host, Host], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub_dns(monkeypatch, {"out.lab.test": OUT_V4, "in.lab.test": IN_V4})
    registry = write_registry(
        tmp_path / "registry.yaml",
        [
            {"endpoints": [{"url": f"http://{IN_V4}/"}, {"host": IN_V4, "ports": [80]}]},  # redirects out
            {"endpoints": [{"url": "http://in.lab.test/"}]},  # in-scope name, redirects out
            {"endpoints": [{"url": "https://out.lab.test/"}, {"host": "out.lab.test", "ports": [22, 80]}]},
        ],
    )
    settings = FAST.model_copy(
        update={"tcp_ports": TcpPortOptions(high_risk_ports=[21, 3306]), "probes": ["tcp_ports", "http", "tls"]}
    )
    probes = [*build_probes(settings), IcmpEchoProbe(settings)]
    net = ScopedNetwork(load_registry(registry).scope, settings)
    assert net.port_scan_method == "tcp-syn"
    with capture(tmp_path, f"host {IN_V4} or host {OUT_V4}") as cap:
        observations = await run_sweep_jobs(plan_sweep(load_registry(registry), probes), net, 32, 20)
        await net.close()
    assert cap.packets(f"dst host {OUT_V4}") == []  # not one packet, of any protocol, to the out-of-scope host
    to_inside = cap.packets(f"dst host {IN_V4}")
    assert any("Flags [S]," in line for _, line in to_inside)  # positive control: the capture saw the SYN scan
    assert any("ICMP echo request" in line for _, line in to_inside)
    by_system = {o.system_id: o for o in observations if o.kind == "http"}
    assert by_system["sys-0"].data["redirect.out_of_scope"] == f"http://{OUT_V4}/"
    assert by_system["sys-1"].data["redirect.out_of_scope"] == f"http://{OUT_V4}/"
    out_of_scope = [o for o in observations if o.system_id == "sys-2"]
    assert {o.kind for o in out_of_scope} == {"http", "host", "tls", "icmp"}
    assert all(o.data["error_kind"] == "out_of_scope" for o in out_of_scope)
    assert net.sent[OUT_V4] == 0


def test_dry_run_prints_every_probe_and_sends_nothing(
    lab: tuple[NetnsLab, Host, Host], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = write_registry(
        tmp_path / "registry.yaml",
        [{"endpoints": [{"url": f"https://{IN_V4}/"}, {"host": IN_V4, "ports": [22, 8443]}]}],
    )
    with capture(tmp_path, f"dst host {IN_V4} or dst host {OUT_V4}") as cap:
        code = main(["scan", "--dry-run", "--registry", str(registry), "--store", str(tmp_path / "s.db")])
    assert code == 0
    out = capsys.readouterr().out
    assert "nothing will be sent" in out
    for line in ("tcp_ports", "http", "tls"):
        assert f"{line} " in out
    assert f"https://{IN_V4}/" in out
    assert any(line.lstrip().startswith("tls") and IN_V4 in line for line in out.splitlines())
    assert any(line.lstrip().startswith("tcp_ports") and ",22," in line and "8443" in line for line in out.splitlines())
    assert cap.packets() == []


async def test_achieved_per_target_rate_stays_within_the_configured_rate(
    lab: tuple[NetnsLab, Host, Host], tmp_path: Path
) -> None:
    rate, ports = 25.0, list(range(2000, 2040))
    # SYNs are raw packets: the packet budget paces them (connections have their own per_target_rate)
    settings = FAST.model_copy(update={"per_target_packet_rate": rate, "per_target_packet_burst": 1.0, "retries": 0})
    net = ScopedNetwork(
        load_registry(write_registry(tmp_path / "r.yaml", [{"endpoints": [{"host": IN_V4}]}])).scope, settings
    )
    with capture(tmp_path, f"dst host {IN_V4} and tcp[tcpflags] == tcp-syn", lab[0].bridge) as cap:
        start = time.perf_counter()
        method, states = await net.port_states(IN_V4, ports)
        took = time.perf_counter() - start
        await net.close()
    assert method == "tcp-syn" and {s.value for s, _ in states} == {"closed"}
    stamps = sorted(t for t, _ in cap.packets())
    assert len(stamps) == len(ports)
    achieved = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert rate * 0.7 <= achieved <= rate * 1.05, f"achieved {achieved:.1f}/s against {rate}/s"
    assert took < len(ports) / rate + 2  # bounded: the limiter does not stall either
