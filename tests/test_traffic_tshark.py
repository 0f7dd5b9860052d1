"""Peer tests: tshark reads the same real captures as Sentinel (the lab's, rules/tests/traffic/) and the
two must agree on who scans, who floods (top sources and packet counts) and which logins leak
cleartext credentials. tshark's side is computed from its own dissection (display filters and
`-T fields`), never from Sentinel's code, so a regression in either decoder or detector fails here."""

from __future__ import annotations

import functools
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet
from sentinel.models import Observation
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Registry
from sentinel.registry.scope import Scope
from sentinel.traffic.analyze import analyze_file, with_unregistered
from sentinel.traffic.detectors.floods import MATERIAL_MIN, MATERIAL_SHARE
from sentinel.traffic.intel import ThreatIntel
from tests.netns import require_tool

FIXTURES = Path(__file__).resolve().parents[1] / "rules" / "tests" / "traffic"
EMPTY = Registry(scope=Scope(), systems=())
RULES = RuleSet(load_rules([shipped_rules_dir() / "traffic"]))
SCAN_CAPTURES = [
    "portscan_syn.pcap",
    "portscan_xmas.pcap",
    "portscan_udp.pcap",
    "sweep_horizontal.pcap",
    "sweep_udp.pcap",
    "dns_lookups.pcap",
    "normal.pcap",
    "syn_flood_with_client.pcap.gz",
]
#: the shipped rules' thresholds: distinct ports of one host (vertical), hosts on one port (horizontal)
VERTICAL, HORIZONTAL = 50, 20
TCP_PROBE = "tcp && tcp.flags.ack == 0 && tcp.flags.reset == 0"  # SYN, FIN, NULL and XMAS probes
UDP_PACKET = "udp && !icmp && !icmpv6"  # not the UDP headers quoted inside ICMP errors


def tshark(capture: str, display_filter: str, *fields: str) -> list[list[str]]:
    tool = require_tool("tshark")
    args = [tool, "-n", "-r", str(FIXTURES / capture), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


@functools.cache
def sentinel(capture: str) -> tuple[Observation, ...]:
    return tuple(analyze_file(FIXTURES / capture, EMPTY, ThreatIntel()).observations)


def present(capture: str, rule_id: str) -> dict[str, dict[str, object]]:
    verdicts = RULES.evaluate_stateless(list(sentinel(capture)), with_unregistered(EMPTY))
    return {v.target: v.evidence for v in verdicts if v.present and v.rule.id == rule_id}


def observed(capture: str, kind: str) -> dict[str, Observation]:
    return {o.target: o for o in sentinel(capture) if o.kind == kind}


def udp_unanswered(capture: str) -> list[tuple[str, str, int]]:
    """(src, dst, dport) of UDP packets whose flow the destination never answered over UDP."""
    rows = [
        (s, d, int(sp), int(dp)) for s, d, sp, dp in tshark(capture, UDP_PACKET, *ADDR, "udp.srcport", "udp.dstport")
    ]
    flows = {(s, d, sp, dp) for s, d, sp, dp in rows}
    return [(s, d, dp) for s, d, sp, dp in rows if (d, s, dp, sp) not in flows]


ADDR = ("ip.src", "ip.dst")


@pytest.mark.parametrize("capture", SCAN_CAPTURES)
def test_vertical_scanners_agree_with_tshark(capture: str) -> None:
    tcp_ports: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for s, d, port in tshark(capture, TCP_PROBE, *ADDR, "tcp.dstport"):
        tcp_ports[s, d].add(int(port))
    udp_ports: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for s, d, port in udp_unanswered(capture):
        udp_ports[s, d].add(port)
    expected_tcp = {f"{s} -> {d}": len(p) for (s, d), p in tcp_ports.items() if len(p) >= VERTICAL}
    expected_udp = {f"{s} -> {d}/udp": len(p) for (s, d), p in udp_ports.items() if len(p) >= VERTICAL}
    assert bool(expected_tcp or expected_udp) == capture.startswith("portscan")  # the peer sees the scans too
    tcp_found = present(capture, "traffic_portscan_vertical")
    udp_found = present(capture, "traffic_portscan_udp")
    assert set(tcp_found) == set(expected_tcp)
    assert set(udp_found) == set(expected_udp)
    scans = observed(capture, "traffic.portscan")
    for target, ports in expected_tcp.items():  # and the same number of distinct ports
        assert scans[target].data["scan.ports"] == ports, target
    for target, ports in expected_udp.items():
        assert scans[target].data["scan.ports"] == ports and scans[target].data["scan.unanswered"] == ports


@pytest.mark.parametrize("capture", SCAN_CAPTURES)
def test_horizontal_scanners_agree_with_tshark(capture: str) -> None:
    hosts: defaultdict[str, set[str]] = defaultdict(set)
    for s, d, port in tshark(capture, TCP_PROBE + " && tcp.flags.syn == 1", *ADDR, "tcp.dstport"):
        hosts[f"{s} -> *:{port}/tcp"].add(d)
    for s, d, port in udp_unanswered(capture):
        hosts[f"{s} -> *:{port}/udp"].add(d)
    expected = {target: len(h) for target, h in hosts.items() if len(h) >= HORIZONTAL}
    assert bool(expected) == capture.startswith("sweep")
    assert set(present(capture, "traffic_portscan_horizontal")) == set(expected)
    scans = observed(capture, "traffic.portscan")
    for target, n in expected.items():
        assert scans[target].data["scan.hosts"] == n, target


@pytest.mark.parametrize("capture", ["syn_flood.pcap.gz", "syn_flood_with_client.pcap.gz", "normal.pcap"])
def test_flood_totals_and_top_sources_agree_with_tshark(capture: str) -> None:
    per_service: defaultdict[str, Counter[str]] = defaultdict(Counter)
    syn = "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.flags.reset == 0"
    for s, d, port in tshark(capture, syn, *ADDR, "tcp.dstport"):
        per_service[f"{d}:{port}/tcp"][s] += 1
    floods = observed(capture, "traffic.syn_flood")
    assert per_service and floods
    for target, sources in per_service.items():
        total = sum(sources.values())
        if total < 2:  # a single SYN is not reported
            continue
        data = floods[target].data
        assert data["syn.count"] == total and data["syn.sources"] == len(sources)
        ranked = sorted(sources.items(), key=lambda kv: (-kv[1], tuple(int(x) for x in kv[0].split("."))))
        top = [(t["source_ip"], t["syn"]) for t in data["syn.top_sources"]]  # type: ignore[attr-defined]
        assert top == ranked[:10]
        material = [s for s, n in ranked if n >= MATERIAL_MIN and n / total >= MATERIAL_SHARE]
        assert data["source_ip"] == material[:10]
    flagged = set(present(capture, "traffic_syn_flood"))
    if capture.startswith("syn_flood"):  # tshark's top service of the flood is the one flagged
        busiest = max(per_service, key=lambda t: sum(per_service[t].values()))
        assert flagged == {busiest}
    else:
        assert flagged == set()


CREDENTIAL_CAPTURES = ["ftp_bruteforce.pcap", "http_basic.pcap", "telnet_login.pcap", "normal.pcap"]


def tshark_credentials(capture: str) -> dict[str, tuple[int, set[str]]]:
    """target → (logins seen, usernames), from tshark's FTP, HTTP and TELNET dissectors."""
    out: dict[str, tuple[int, set[str]]] = {}
    users: defaultdict[tuple[str, str, str], set[str]] = defaultdict(set)
    for s, d, port, arg in tshark(capture, 'ftp.request.command == "USER"', *ADDR, "tcp.dstport", "ftp.request.arg"):
        users[s, d, port].add(arg)
    passes = Counter((s, d, p) for s, d, p in tshark(capture, 'ftp.request.command == "PASS"', *ADDR, "tcp.dstport"))
    for (s, d, p), n in passes.items():
        out[f"{s} -> {d}:{p}/tcp ftp"] = (n, users[s, d, p])
    basic: defaultdict[tuple[str, str, str], list[str]] = defaultdict(list)
    for s, d, p, cred in tshark(capture, "http.authbasic", *ADDR, "tcp.dstport", "http.authbasic"):
        basic[s, d, p].append(cred.split(":", 1)[0])
    for (s, d, p), names in basic.items():
        out[f"{s} -> {d}:{p}/tcp http-basic"] = (len(names), set(names))
    # telnet: what the client types after the server's "login:" and "Password:" prompts
    prompt: dict[tuple[str, str], str] = {}
    logins: defaultdict[tuple[str, str], tuple[int, set[str]]] = defaultdict(lambda: (0, set()))
    for s, d, sport, dport, text in tshark(capture, "telnet.data", *ADDR, "tcp.srcport", "tcp.dstport", "telnet.data"):
        if sport == "23":
            prompt[d, s] = "password" if "assword" in text else "login" if "login:" in text else ""
        elif dport == "23" and prompt.get((s, d)):
            n, names = logins[s, d]
            if prompt[s, d] == "login":
                names.add(text.replace("\\r\\n", "").strip())
            else:
                n += 1
            logins[s, d] = (n, names)
            prompt[s, d] = ""
    for (s, d), (n, names) in logins.items():
        if n:
            out[f"{s} -> {d}:23/tcp telnet"] = (n, names)
    return out


@pytest.mark.parametrize("capture", CREDENTIAL_CAPTURES)
def test_cleartext_credentials_agree_with_tshark(capture: str) -> None:
    expected = tshark_credentials(capture)
    assert bool(expected) == (capture != "normal.pcap")
    assert set(present(capture, "traffic_cleartext_credentials")) == set(expected)
    creds = observed(capture, "traffic.cleartext_credentials")
    for target, (count, names) in expected.items():
        assert creds[target].data["credentials.count"] == count, target
        assert set(creds[target].data["credentials.usernames"]) == names, target
