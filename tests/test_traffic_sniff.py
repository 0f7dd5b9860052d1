"""Live capture (sentinel.traffic.sniff / ring) against tcpdump on the same interface, with real nmap and
hping3 traffic between namespaces; and a capture forced to drop, whose loss must be reported."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Registry
from sentinel.registry.scope import Scope
from sentinel.traffic.analyze import with_unregistered
from sentinel.traffic.capture import CaptureReader
from sentinel.traffic.intel import ThreatIntel
from sentinel.traffic.sniff import LiveCapture, SniffResult, sniff
from tests.netns import Host, NetnsLab, netns_lab, require_tool

pytestmark = pytest.mark.netns

VICTIM, ATTACKER = "198.18.121.10", "198.18.121.30"
EMPTY = Registry(scope=Scope(), systems=())
RULES = RuleSet(load_rules([shipped_rules_dir() / "traffic"]))


def outside(lab: NetnsLab, host: Host) -> str:
    """The root-namespace end of the host's veth pair (a bridge port: it sees both directions)."""
    return f"v{lab.tag}{host.name[-3:]}"


@pytest.fixture(scope="module")
def hosts() -> Iterator[tuple[NetnsLab, Host, Host]]:
    for tool in ("tcpdump", "nmap", "hping3"):
        require_tool(tool)
    with netns_lab() as lab:
        yield lab, lab.add_host(VICTIM), lab.add_host(ATTACKER)


@contextlib.contextmanager
def tcpdump(iface: str, bpf: str, path: Path) -> Iterator[Path]:
    proc = subprocess.Popen(
        ["tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-s", "256", "-w", str(path), bpf],
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        deadline, seen = time.monotonic() + 10, b""
        while b"listening on" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 0.2)
            if ready:
                seen += os.read(proc.stderr.fileno(), 4096)
        assert b"listening on" in seen, f"tcpdump did not start: {seen!r}"
        time.sleep(0.5)
        yield path
    finally:
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def in_background(work: object) -> tuple[threading.Thread, list[SniffResult]]:
    out: list[SniffResult] = []
    thread = threading.Thread(target=lambda: out.append(work()))  # type: ignore[operator]
    thread.start()
    return thread, out


def test_sniff_sees_what_tcpdump_sees_during_an_nmap_burst(hosts: tuple[NetnsLab, Host, Host], tmp_path: Path) -> None:
    """Issue 11 defect 8: live sniffing saw 158 of the 300 packets tcpdump saw and missed the scan."""
    lab, victim, attacker = hosts
    iface, bpf = outside(lab, victim), f"host {VICTIM}"
    with tcpdump(iface, bpf, tmp_path / "reference.pcap") as reference:
        thread, out = in_background(lambda: sniff(iface, bpf, 4.0, EMPTY, ThreatIntel()))
        time.sleep(0.5)
        attacker.run("nmap", "-n", "-Pn", "-sS", "-T5", "--max-retries", "0", "-p", "1-1000", VICTIM, check=False)
        thread.join(15)
    reader = CaptureReader(reference)
    expected = sum(len(b) for b in reader.batches())
    (result,) = out
    assert expected >= 2000  # 1,000 SYNs and their RSTs
    assert result.dropped == 0 and not result.lossy
    assert result.packets >= expected * 0.99, (result.packets, expected)
    assert result.received >= result.packets
    present = [v for v in RULES.evaluate_stateless(result.observations, with_unregistered(EMPTY)) if v.present]
    scan = next(v for v in present if v.rule.id == "traffic_portscan_vertical")
    assert scan.target == f"{ATTACKER} -> {VICTIM}" and scan.evidence["capture.dropped"] == 0
    health = next(o for o in result.observations if o.kind == "traffic.capture")
    assert health.data["capture.received"] == result.received and health.data["capture.analysed"] == result.packets
    assert health.data["capture.lossy"] is False
    assert not any(v.rule.id == "traffic_capture_lossy" for v in present)


def test_a_capture_that_cannot_keep_up_reports_its_drops(hosts: tuple[NetnsLab, Host, Host], tmp_path: Path) -> None:
    """A ring of two 4 KB blocks and a consumer that sleeps per block: the kernel must drop, and say so."""
    lab, victim, attacker = hosts
    iface, bpf = outside(lab, victim), f"udp and host {VICTIM} and dst port 7"
    with LiveCapture(iface, bpf, ring_kb=8, block_kb=4) as live:
        slow = lambda: time.sleep(0.05)  # noqa: E731
        thread, out = in_background(lambda: live.window(3.0, EMPTY, ThreatIntel(), on_batch=slow))
        time.sleep(0.3)
        attacker.run("hping3", "-q", "--udp", "-p", "7", "-d", "200", "-i", "u100", "-c", "3000", VICTIM, check=False)
        thread.join(15)
    (result,) = out
    assert result.dropped > 0 and result.lossy
    assert result.received >= result.packets + result.dropped
    assert result.received <= 3000
    health = next(o for o in result.observations if o.kind == "traffic.capture")
    assert health.data["capture.dropped"] == result.dropped and health.data["capture.lossy"] is True
    # every detection of the window carries the loss
    others = [o for o in result.observations if o.kind != "traffic.capture"]
    assert others and all(o.data["capture.dropped"] == result.dropped for o in others)
    present = [v for v in RULES.evaluate_stateless(result.observations, with_unregistered(EMPTY)) if v.present]
    lossy = next(v for v in present if v.rule.id == "traffic_capture_lossy")
    assert lossy.evidence["capture.dropped"] == result.dropped and lossy.target == f"capture {iface}"
