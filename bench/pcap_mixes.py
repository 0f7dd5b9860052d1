"""Generated captures for the traffic benchmarks: a mixed capture as an operator would analyse one, and a
hostile one built to grow the detectors' tables.

`mixed`: web traffic (HTTPS, HTTP, QUIC and DNS flows that are answered) with a port scan, a UDP scan,
a ping sweep, a spoofed SYN flood, an FTP brute force with cleartext logins, HTTP Basic logins with
401 answers and a DNS tunnel (TXT queries with random 40-character labels).

`hostile`: every packet from a random source, to random ports: SYNs to random services, UDP to
random ports, DNS queries for random short names under random domains, ICMP and ARP from random
addresses. Nothing repeats, so every table a detector keeps meets a new key in almost every packet.

Frames of a kind are built from one template (numpy blocks, no scapy); the fields that vary per
packet are written at their byte offsets (Ethernet + IPv4 without options: src 26, dst 30, sport 34,
dport 36, UDP/TCP payload after 42/54).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.pcapgen import PcapWriter, dns_query, ether, ip4, tcp, udp
from bench.pcapgen import ipv4 as ip

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
SRC, DST, SPORT, DPORT, UDP_DATA = 26, 30, 34, 36, 42
SLICE = 20_000
T0, RATE = 1_763_900_000.0, 20_000.0


def addr(text: str) -> int:
    return int.from_bytes(bytes(int(x) for x in text.split(".")), "big")


SERVERS = np.array([addr(f"10.20.1.{i}") for i in range(1, 21)], np.int64)
ATTACKERS = np.array([addr(f"10.77.0.{i}") for i in range(1, 6)], np.int64)
HTTP_GET = (
    b"GET /api/v1/notices?page=2 HTTP/1.1\r\nHost: portal.gov.example.cn\r\nUser-Agent: Mozilla/5.0\r\n"
    b"Accept: text/html\r\nCookie: session=3f9a0c1d2e\r\n\r\n"
)
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 600\r\n\r\n" + b"<p>notice</p>" * 50
HTTP_BASIC = (
    b"GET /admin/ HTTP/1.1\r\nHost: admin.gov.example.cn\r\nAuthorization: Basic "
    + base64.b64encode(b"admin:Winter2026!")
    + b"\r\n\r\n"
)
HTTP_401 = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=admin\r\nContent-Length: 0\r\n\r\n"
TUNNEL_LABEL = 40  # random hex characters in each tunnelled name
TUNNEL_AT = UDP_DATA + 12 + 1  # the first label's text: after the DNS header and its length byte


def _put(block: U8, offset: int, values: I64, size: int) -> None:
    dtype = ">u4" if size == 4 else ">u2"
    block[:, offset : offset + size] = values.astype(dtype).view(np.uint8).reshape(-1, size)


@dataclass(frozen=True)
class Kind:
    """One kind of packet: its template, its share of each slice, and how to vary it per packet."""

    frame: bytes
    share: float
    vary: Callable[[U8, np.random.Generator, int, State], None]


@dataclass
class State:
    """What runs on from slice to slice (the port a scan is at, the clients' addresses)."""

    clients: I64
    scan_port: int = 1
    udp_port: int = 1
    sweep_host: int = 0


def _client_flow(to_server: bool, port_offset: int = 0) -> Callable[[U8, np.random.Generator, int, State], None]:
    """A client's flow with a server: the client's port is fixed per client, so packets repeat flows
    and the server's answers go back to the port that asked."""

    def vary(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
        client = st.clients[rng.integers(0, st.clients.size, n)]
        server = SERVERS[rng.integers(0, SERVERS.size, n)]
        cport = 32768 + (client + port_offset) % 28000
        _put(block, SRC, client if to_server else server, 4)
        _put(block, DST, server if to_server else client, 4)
        _put(block, SPORT if to_server else DPORT, cport, 2)

    return vary


def _dns(to_resolver: bool) -> Callable[[U8, np.random.Generator, int, State], None]:
    def vary(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
        client = st.clients[rng.integers(0, st.clients.size, n)]
        _put(block, SRC if to_resolver else DST, client, 4)
        _put(block, SPORT if to_resolver else DPORT, 32768 + (client * 7) % 28000, 2)

    return vary


def _port_scan(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    _put(block, DPORT, (st.scan_port + np.arange(n)) % 65535 + 1, 2)
    st.scan_port += n


def _udp_scan(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    _put(block, DPORT, (st.udp_port + np.arange(n)) % 65535 + 1, 2)
    st.udp_port += n


def _sweep(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    _put(block, DST, addr("10.20.128.0") + (st.sweep_host + np.arange(n)) % 32768, 4)
    st.sweep_host += n


def _syn_flood(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    _put(block, SRC, rng.integers(1 << 24, 223 << 24, n), 4)
    _put(block, SPORT, rng.integers(1024, 65535, n), 2)


def _attacker(to_server: bool) -> Callable[[U8, np.random.Generator, int, State], None]:
    def vary(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
        who = rng.integers(0, ATTACKERS.size, n)
        _put(block, SRC if to_server else DST, ATTACKERS[who], 4)
        _put(block, SPORT if to_server else DPORT, 50000 + who, 2)

    return vary


def _tunnel(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    hexdigits = np.frombuffer(b"0123456789abcdef", np.uint8)
    block[:, TUNNEL_AT : TUNNEL_AT + TUNNEL_LABEL] = hexdigits[rng.integers(0, 16, (n, TUNNEL_LABEL))]
    block[:, UDP_DATA : UDP_DATA + 2] = rng.integers(0, 256, (n, 2), dtype=np.uint8)  # message ids


def _keep(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    """Fields as in the template (or set by another kind's `vary`)."""


def _client_icmp(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    _put(block, SRC, st.clients[rng.integers(0, st.clients.size, n)], 4)
    _put(block, DST, SERVERS[rng.integers(0, SERVERS.size, n)], 4)


C, S = "10.30.0.1", "10.20.1.1"
ECHO = b"\x08\x00\x00\x00\x00\x01\x00\x01"  # ICMP echo request header
MIXED: dict[str, Kind] = {
    "tcp_ack": Kind(tcp(C, S, 40000, 443, 0x10), 0.285, _client_flow(True)),
    "https_data": Kind(tcp(S, C, 443, 40000, 0x18, b"\x17\x03\x03" + bytes(1200)), 0.20, _client_flow(False)),
    "http_request": Kind(tcp(C, S, 40000, 80, 0x18, HTTP_GET), 0.04, _client_flow(True, 1)),
    "http_response": Kind(tcp(S, C, 80, 40000, 0x18, HTTP_OK), 0.04, _client_flow(False, 1)),
    "syn": Kind(tcp(C, S, 40000, 443, 0x02), 0.03, _client_flow(True)),
    "synack": Kind(tcp(S, C, 443, 40000, 0x12), 0.03, _client_flow(False)),
    "quic": Kind(udp(C, S, 40000, 443, b"\xc0" + bytes(1199)), 0.06, _client_flow(True, 2)),
    "quic_reply": Kind(udp(S, C, 443, 40000, b"\xc0" + bytes(1199)), 0.06, _client_flow(False, 2)),
    "dns_query": Kind(udp(C, "10.20.0.53", 40000, 53, dns_query("www.gov.example.cn")), 0.03, _dns(True)),
    "dns_response": Kind(
        udp("10.20.0.53", C, 53, 40000, dns_query("www.gov.example.cn") + bytes(32)), 0.03, _dns(False)
    ),
    "syn_flood": Kind(tcp("1.2.3.4", S, 40000, 80, 0x02), 0.08, _syn_flood),
    "port_scan": Kind(tcp("10.66.6.6", "10.20.1.2", 40000, 1, 0x02), 0.02, _port_scan),
    "udp_scan": Kind(udp("10.66.6.7", "10.20.1.3", 40001, 1, b""), 0.01, _udp_scan),
    "ping_sweep": Kind(ether(ip4("10.66.6.8", S, 1, ECHO + bytes(56))), 0.005, _sweep),
    "ftp_user": Kind(tcp("10.77.0.1", "10.20.1.5", 50000, 21, 0x18, b"USER admin\r\n"), 0.002, _attacker(True)),
    "ftp_pass": Kind(tcp("10.77.0.1", "10.20.1.5", 50000, 21, 0x18, b"PASS guess1\r\n"), 0.002, _attacker(True)),
    "ftp_530": Kind(
        tcp("10.20.1.5", "10.77.0.1", 21, 50000, 0x18, b"530 Login incorrect.\r\n"), 0.002, _attacker(False)
    ),
    "http_basic": Kind(tcp("10.77.0.1", "10.20.1.6", 50000, 80, 0x18, HTTP_BASIC), 0.002, _attacker(True)),
    "http_401": Kind(tcp("10.20.1.6", "10.77.0.1", 80, 50000, 0x18, HTTP_401), 0.002, _attacker(False)),
    "dns_tunnel": Kind(
        udp("10.30.9.9", "10.20.0.53", 45000, 53, dns_query("x" * TUNNEL_LABEL + ".t.exfil-example.net", 16)),
        0.01,
        _tunnel,
    ),
    "icmp": Kind(ether(ip4(C, S, 1, ECHO + bytes(56))), 0.01, _client_icmp),
    "arp": Kind(ether(bytes.fromhex("0001080006040001") + bytes(6) + ip(C) + bytes(10), 0x0806), 0.004, _keep),
}


def _random_everything(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    _put(block, SRC, rng.integers(1 << 24, 223 << 24, n), 4)
    _put(block, DST, rng.integers(1 << 24, 223 << 24, n), 4)
    _put(block, SPORT, rng.integers(1, 65536, n), 2)
    _put(block, DPORT, rng.integers(1, 65536, n), 2)


def _random_syn(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    _random_everything(block, rng, n, st)
    _put(block, DST, SERVERS[rng.integers(0, SERVERS.size, n)], 4)  # random services of the registered hosts


SHORT = 6  # "<6 random letters>.<4 random letters>.com"


def _random_names(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    _put(block, SRC, rng.integers(1 << 24, 223 << 24, n), 4)
    _put(block, SPORT, rng.integers(1024, 65536, n), 2)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", np.uint8)
    at = UDP_DATA + 13
    block[:, at : at + SHORT] = letters[rng.integers(0, 26, (n, SHORT))]
    block[:, at + SHORT + 1 : at + SHORT + 5] = letters[rng.integers(0, 26, (n, 4))]


def _random_arp(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    # sender MAC and sender / target addresses (ARP body starts at 14)
    block[:, 22:28] = rng.integers(0, 256, (n, 6), dtype=np.uint8)
    _put(block, 28, rng.integers(1 << 24, 223 << 24, n), 4)
    _put(block, 38, rng.integers(1 << 24, 223 << 24, n), 4)


def _random_icmp(block: U8, rng: np.random.Generator, n: int, st: State) -> None:
    _put(block, SRC, rng.integers(1 << 24, 223 << 24, n), 4)
    _put(block, DST, rng.integers(1 << 24, 223 << 24, n), 4)


HOSTILE: dict[str, Kind] = {
    "syn": Kind(tcp(C, S, 1, 1, 0x02), 0.30, _random_syn),
    "tcp_any": Kind(tcp(C, S, 1, 1, 0x29), 0.10, _random_everything),  # FIN+PSH+URG: xmas probes
    "udp": Kind(udp(C, S, 1, 1, bytes(16)), 0.25, _random_everything),
    "dns": Kind(udp(C, "10.20.0.53", 1, 53, dns_query("a" * SHORT + ".bbbb.com")), 0.25, _random_names),
    "icmp": Kind(ether(ip4(C, S, 1, ECHO + bytes(16))), 0.05, _random_icmp),
    "arp": Kind(ether(bytes.fromhex("0001080006040002") + bytes(20), 0x0806), 0.05, _random_arp),
}
MIXES = {"mixed": MIXED, "hostile": HOSTILE}


def generate(path: Path, packets: int, mix: str = "mixed", seed: int = 7) -> None:
    """Write `packets` packets of `mix`, slice by slice in time order (20,000 packets/s of capture time)."""
    kinds = MIXES[mix]
    rng = np.random.default_rng(seed)
    state = State(clients=(10 << 24 | 30 << 16) + rng.integers(1, 4000, 100_000))
    written = 0
    with PcapWriter(path) as writer:
        while written < packets:
            size = min(SLICE, packets - written)
            counts = {name: int(k.share * size) for name, k in kinds.items()}
            first = next(iter(kinds))
            counts[first] += size - sum(counts.values())
            ts = T0 + (written + np.arange(size)) / RATE
            at = 0
            for name, n in counts.items():
                if n <= 0:
                    continue
                kind = kinds[name]
                block = np.tile(np.frombuffer(kind.frame, np.uint8), (n, 1))
                kind.vary(block, rng, n, state)
                writer.write_block(ts[at : at + n], block)
                at += n
            written += size
