"""Benchmark: `sentinel pcap analyze` against `tshark -q -z conv,tcp` on generated captures.

Generates captures with a realistic mix (HTTPS and HTTP sessions, DNS, QUIC, ICMP, ARP, a port scan
and a spoofed SYN flood) using the numpy block writer, then prints packets/s and peak RSS of each
tool on each file. Two sizes show that RSS does not grow with the file. The command's start-up
(interpreter, imports, rules, store) is measured on a tiny capture and also taken out of its rate.

    python -m bench.pcap_analyze [--packets 1000000 4000000] [--no-tshark]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sentinel.traffic.writer import PcapWriter, dns_query, ether, ip4, tcp, udp

SERVERS = [f"10.20.1.{i}" for i in range(1, 21)]
SLICE = 20_000
#: (name, share of packets). The mix is per slice of 20,000 packets, in time order.
MIX = {
    "tcp_ack": 0.30,
    "https_data": 0.20,
    "quic": 0.10,
    "http_request": 0.05,
    "http_response": 0.05,
    "syn": 0.04,
    "synack": 0.04,
    "dns_query": 0.04,
    "dns_response": 0.04,
    "syn_flood": 0.10,
    "port_scan": 0.02,
    "icmp": 0.015,
    "arp": 0.005,
}
HTTP_REQUEST = (
    b"GET /api/v1/notices?page=2 HTTP/1.1\r\nHost: portal.gov.example.cn\r\nUser-Agent: Mozilla/5.0\r\n"
    b"Accept: text/html\r\nCookie: session=3f9a0c1d2e\r\n\r\n"
)
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 600\r\n\r\n" + b"<p>notice</p>" * 50
REGISTRY = "scope:\n  allow: [10.20.0.0/16]\nsystems:\n" + "".join(
    f"  - {{id: sys-{i}, name: System {i}, owner: {{department: IT}}, tier: city, mlps_level: 3,"
    f" endpoints: [{{host: {ip}, ports: [80, 443]}}]}}\n"
    for i, ip in enumerate(SERVERS, 1)
)


def _template(kind: str) -> tuple[bytes, dict[str, int]]:
    """A frame and the byte offsets of the fields varied per packet (src/dst address, ports)."""
    a, b = "10.30.0.1", SERVERS[0]
    frames = {
        "tcp_ack": tcp(a, b, 40000, 443, 0x10),
        "https_data": tcp(b, a, 443, 40000, 0x18, b"\x17\x03\x03" + bytes(1200)),
        "quic": udp(a, b, 40000, 443, b"\xc0" + bytes(1199)),
        "http_request": tcp(a, b, 40000, 80, 0x18, HTTP_REQUEST),
        "http_response": tcp(b, a, 80, 40000, 0x18, HTTP_RESPONSE),
        "syn": tcp(a, b, 40000, 443, 0x02),
        "synack": tcp(b, a, 443, 40000, 0x12),
        "dns_query": udp(a, "10.20.0.53", 40000, 53, dns_query("www.gov.example.cn")),
        "dns_response": udp("10.20.0.53", a, 53, 40000, dns_query("www.gov.example.cn") + bytes(32)),
        "syn_flood": tcp(a, b, 40000, 80, 0x02),
        "port_scan": tcp("10.66.6.6", b, 40000, 1, 0x02),
        "icmp": ether(ip4(a, b, 1, b"\x08\x00\x00\x00\x00\x01\x00\x01" + bytes(56))),
        "arp": ether(bytes.fromhex("0001080006040001") + bytes(6) + bytes([10, 30, 0, 1]) + bytes(10), 0x0806),
    }
    return frames[kind], {"src": 26, "dst": 30, "sport": 34, "dport": 36}


def _put_u32(block: npt.NDArray[np.uint8], offset: int, values: npt.NDArray[np.int64]) -> None:
    block[:, offset : offset + 4] = values.astype(">u4").view(np.uint8).reshape(-1, 4)


def _put_u16(block: npt.NDArray[np.uint8], offset: int, values: npt.NDArray[np.int64]) -> None:
    block[:, offset : offset + 2] = values.astype(">u2").view(np.uint8).reshape(-1, 2)


def generate(path: Path, packets: int, seed: int = 6) -> None:
    rng = np.random.default_rng(seed)
    servers = np.array([int.from_bytes(bytes(int(x) for x in s.split(".")), "big") for s in SERVERS], np.int64)
    clients = (10 << 24 | 30 << 16) + rng.integers(1, 4000, 100_000)
    templates = {kind: _template(kind) for kind in MIX}
    t0, rate, written, scan_port = 1_763_900_000.0, 20_000.0, 0, 1
    with PcapWriter(path) as writer:
        while written < packets:
            size = min(SLICE, packets - written)
            counts = {k: int(share * size) for k, share in MIX.items()}
            counts["tcp_ack"] += size - sum(counts.values())
            ts = t0 + (written + np.arange(size)) / rate
            at = 0
            for kind, n in counts.items():
                if n == 0:
                    continue
                frame, off = templates[kind]
                block = np.tile(np.frombuffer(frame, np.uint8), (n, 1))
                server = servers[rng.integers(0, servers.size, n)]
                client = clients[rng.integers(0, clients.size, n)]
                if kind == "syn_flood":  # spoofed sources against one service
                    client = rng.integers(1 << 24, 223 << 24, n)
                    server = np.full(n, servers[0])
                if kind == "port_scan":
                    server = np.full(n, servers[1])
                    _put_u16(block, off["dport"], (scan_port + np.arange(n)) % 65535 + 1)
                    scan_port += n
                to_server = kind in ("tcp_ack", "quic", "http_request", "syn", "syn_flood", "icmp")
                if kind not in ("dns_query", "dns_response", "arp", "port_scan"):
                    _put_u32(block, off["src"], client if to_server else server)
                    _put_u32(block, off["dst"], server if to_server else client)
                if kind not in ("icmp", "arp", "port_scan"):
                    ephemeral = rng.integers(32768, 60999, n)
                    _put_u16(block, off["sport"] if to_server or kind == "dns_query" else off["dport"], ephemeral)
                writer.write_block(ts[at : at + n], block)
                at += n
            written += size


def measure(cmd: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB (the command and its children), and stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}): {err[-500:]}")
    return took, usage.ru_maxrss // 1024, err


def in_process_rate(path: Path, registry: Path) -> float:
    """Analyser throughput without interpreter start-up or rule evaluation."""
    from sentinel.registry.loader import load_registry
    from sentinel.traffic.analyze import analyze_file
    from sentinel.traffic.intel import ThreatIntel

    start = time.perf_counter()
    result = analyze_file(path, load_registry(registry), ThreatIntel())
    return result.packets / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, nargs="+", default=[1_000_000, 4_000_000])
    parser.add_argument("--no-tshark", action="store_true")
    parser.add_argument("--keep", type=Path, help="Write the captures here and keep them.")
    args = parser.parse_args()
    tshark = None if args.no_tshark else shutil.which("tshark")
    work = args.keep or Path(tempfile.mkdtemp(prefix="sentinel-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    registry = work / "registry.yaml"
    registry.write_text(REGISTRY)
    analyze = [sys.executable, "-c", "import sys; from sentinel.cli.pcap_cmd import pcap; sys.exit(pcap.main())"]
    print(f"{'capture':>26} {'MB':>7} {'tool':>22} {'seconds':>8} {'packets/s':>11} {'peak RSS MB':>11}")
    try:
        # The command's fixed cost (interpreter, imports, rules, store) on a 1,000-packet capture, so
        # the per-packet rate of the command can be told apart from its start-up.
        tiny = work / "mix_1000.pcap"
        generate(tiny, 1000)
        cmd = [*analyze, "analyze", str(tiny), "--registry", str(registry), "--format", "json"]
        fixed, rss, _ = measure([*cmd, "--store", str(work / "fixed.db")])
        print(f"{tiny.name:>26} {'':>7} {'sentinel pcap analyze':>22} {fixed:8.2f} {'(start-up)':>11} {rss:11}")
        for n in args.packets:
            path = work / f"mix_{n}.pcap"
            t = time.perf_counter()
            generate(path, n)
            gen = time.perf_counter() - t
            mb = path.stat().st_size / 1e6
            print(f"# wrote {path.name}: {n:,} packets, {mb:.0f} MB in {gen:.1f} s ({n / gen:,.0f} packets/s)")
            cmd = [*analyze, "analyze", str(path), "--registry", str(registry), "--format", "json"]
            cmd += ["--store", str(work / "bench.db"), "--memory-limit", "4096"]
            took, rss, _ = measure(cmd)
            print(f"{path.name:>26} {mb:7.0f} {'sentinel pcap analyze':>22} {took:8.2f} {n / took:11,.0f} {rss:11}")
            net = max(took - fixed, 1e-9)
            print(f"{path.name:>26} {mb:7.0f} {'(command - start-up)':>22} {net:8.2f} {n / net:11,.0f} {'':>11}")
            rate = in_process_rate(path, registry)
            print(f"{path.name:>26} {mb:7.0f} {'(analyser in-process)':>22} {n / rate:8.2f} {rate:11,.0f} {'':>11}")
            if tshark:
                took, rss, _ = measure([tshark, "-r", str(path), "-q", "-z", "conv,tcp"])
                print(f"{path.name:>26} {mb:7.0f} {'tshark -z conv,tcp':>22} {took:8.2f} {n / took:11,.0f} {rss:11}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
