"""Benchmark: `sentinel pcap analyze` against `tshark -q -z conv,tcp` on generated captures.

Three traffic mixes (see bench/pcap_mixes.py for the other two):

- `mixed`: web traffic with scans, a SYN flood, FTP and HTTP logins and a DNS tunnel, as an operator
  would analyse a capture (the figure issue 15 asks for: the whole command, start-up included);
- `hostile`: random sources, random ports, random short DNS names: every table meets new keys, so
  the child's peak RSS shows that memory stays bounded;
- `web`: the earlier mix (HTTPS, HTTP, DNS, QUIC where every packet opens a new UDP flow, a port scan,
  a spoofed SYN flood), kept to compare with earlier figures.

For each capture: the whole command (interpreter start-up, imports, rules, store, the forked child,
rule evaluation and the findings), the analyser alone in a forked child like the command's (its
packets/s and its own peak RSS), and tshark on the same file in the same run. Wall time is what a
user waits; CPU seconds (user + system, children included) are steadier on a shared machine.

Before each run the capture is read once, so that every tool starts with it in the page cache (the
figures are about analysing, not the disk). Each measurement is made `--repeat` times (default 3),
every run is printed, then the median and the best run of each tool (by wall time) with the largest
peak RSS of its runs. `--compiled` first writes
the package's bytecode, as installing it from a wheel does (a checkout run with PYTHONDONTWRITEBYTECODE
compiles every module again in every process, about 0.2 s of each start-up).

    python -m bench.pcap_analyze [--packets 2000000 10000000] [--mix mixed hostile] [--repeat 3]
                                 [--no-tshark | --tshark-repeat 1]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench import pcap_mixes as mixes
from bench.pcapgen import PcapWriter, dns_query, ether, ip4, tcp, udp

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


def warm(path: Path) -> None:
    """Read the capture once, so that every tool's run starts with it in the page cache: the figures are
    about analysing, not about the disk (this machine's host pages out memory left cold for a while)."""
    buf = bytearray(8 << 20)
    with path.open("rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def measure(cmd: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak RSS in MB (of the command or of its largest child), and stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}): {err[-500:]}")
    return took, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024, err


def analyser_alone(path: Path, registry: Path) -> tuple[float, float, float]:
    """The analysis as the command runs it (a forked child with its limits), without the command's
    start-up or rule evaluation: wall seconds, the child's CPU seconds and its own peak RSS in MB."""
    import resource

    from sentinel.registry.loader import load_registry
    from sentinel.traffic.idle import CpuSample
    from sentinel.traffic.intel import load_intel, shipped_intel_dir
    from sentinel.traffic.isolate import analyze_isolated, default_parts

    sample = CpuSample.now()
    reg, intel = load_registry(registry), load_intel([shipped_intel_dir()])
    time.sleep(0.05)  # the command measures idle CPUs over its imports; here over this
    parts = default_parts(sample)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    outcome = analyze_isolated(path, reg, intel, time_limit=3600, memory_mb=4096, parts=parts)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if outcome.error:
        raise SystemExit(f"{path}: {outcome.error}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return took, cpu, outcome.peak_rss_mb


def write(path: Path, packets: int, mix: str) -> None:
    if mix == "web":
        generate(path, packets)
    else:
        mixes.generate(path, packets, mix)


ROW = "{:>22} {:>6} {:>24} {:>8} {:>7} {:>11} {:>11} {:>8}"


def row(capture: str, mb: str, tool: str, wall: float | None, cpu: float | None, n: int, rss: float | None) -> None:
    fmt = ROW.format(
        capture,
        mb,
        tool,
        f"{wall:.2f}" if wall is not None else "",
        f"{cpu:.2f}" if cpu is not None else "",
        f"{n / wall:,.0f}" if wall else "",
        f"{n / cpu:,.0f}" if cpu else "",
        f"{rss:.0f}" if rss is not None else "",
    )
    print(fmt, flush=True)


Run = tuple[float, float, float]  # wall s, CPU s, peak RSS MB


def summary(capture: str, mb: str, tool: str, runs: list[Run], n: int) -> None:
    """The median and the best run by wall time, each with its CPU time; RSS: the largest of the runs."""
    if len(runs) < 2:
        return
    rss = max(r[2] for r in runs)
    walls = sorted(runs)
    median = walls[(len(walls) - 1) // 2]  # the lower middle one for an even count
    row(capture, mb, f"{tool[:15]} median", median[0], median[1], n, rss)
    row(capture, mb, f"{tool[:15]} best", walls[0][0], walls[0][1], n, rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, nargs="+", default=[2_000_000, 10_000_000])
    parser.add_argument("--mix", nargs="+", choices=["mixed", "hostile", "web"], default=["mixed", "hostile"])
    parser.add_argument("--repeat", type=int, default=3, help="Runs of each tool per capture (all are printed).")
    parser.add_argument("--compiled", action="store_true", help="Write the package's bytecode first.")
    parser.add_argument("--no-tshark", action="store_true")
    parser.add_argument(
        "--tshark-repeat", type=int, default=1, help="Runs of tshark per capture (it takes minutes on 10 M packets)."
    )
    parser.add_argument("--keep", type=Path, help="Write the captures here and keep them.")
    args = parser.parse_args()
    tshark = None if args.no_tshark else shutil.which("tshark")
    work = args.keep or Path(tempfile.mkdtemp(prefix="sentinel-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    registry = work / "registry.yaml"
    registry.write_text(REGISTRY)
    # as a user runs it: the console script installed beside this interpreter (what a venv or a system
    # install puts on PATH; a version manager's shim in front of it, such as pyenv's, adds its own start-up),
    # else the same entry point through this interpreter
    beside = Path(sys.executable).with_name("sentinel")
    script = str(beside) if beside.is_file() else shutil.which("sentinel")
    analyze = [script] if script else [sys.executable, "-c", "from sentinel.cli.main import entrypoint; entrypoint()"]
    print(f"# command: {analyze[0]}")
    if args.compiled:
        import sentinel

        compileall.compile_dir(Path(sentinel.__file__).parent, quiet=1)
        print("# bytecode written for the sentinel package")
    print(f"# load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
    print(ROW.format("capture", "MB", "tool", "wall s", "CPU s", "packets/s", "pkts/CPU-s", "RSS MB"))
    try:
        # The command's fixed cost (interpreter, imports, rules, store) on a 1,000-packet capture.
        tiny = work / "mixed_1000.pcap"
        mixes.generate(tiny, 1000)
        cmd = [*analyze, "pcap", "analyze", str(tiny), "--registry", str(registry), "--format", "json"]
        start_ups: list[Run] = []
        for _ in range(args.repeat):
            fixed, cpu, rss, _ = measure([*cmd, "--store", str(work / "fixed.db")])
            start_ups.append((fixed, cpu, rss))
            print(ROW.format(tiny.name, "", "sentinel (start-up)", f"{fixed:.2f}", f"{cpu:.2f}", "", "", rss))
        summary(tiny.name, "", "start-up", start_ups, 0)
        for mix in args.mix:
            for n in args.packets:
                path = work / f"{mix}_{n}.pcap"
                if not path.exists():
                    t = time.perf_counter()
                    write(path, n, mix)
                    gen = time.perf_counter() - t
                    print(f"# wrote {path.name}: {n:,} packets, {path.stat().st_size / 1e6:.0f} MB in {gen:.1f} s")
                mb = f"{path.stat().st_size / 1e6:.0f}"
                runs: dict[str, list[Run]] = {"sentinel": [], "analyser": [], "tshark": []}
                for _ in range(args.repeat):
                    db = work / "bench.db"
                    for leftover in work.glob("bench.db*"):
                        leftover.unlink()
                    cmd = [*analyze, "pcap", "analyze", str(path), "--registry", str(registry), "--format", "json"]
                    warm(path)
                    took, cpu, rss, _ = measure([*cmd, "--store", str(db), "--memory-limit", "4096"])
                    row(path.name, mb, "sentinel pcap analyze", took, cpu, n, rss)
                    runs["sentinel"].append((took, cpu, rss))
                    warm(path)
                    took, cpu, child_rss = analyser_alone(path, registry)
                    row(path.name, mb, "(analyser in its child)", took, cpu, n, child_rss)
                    runs["analyser"].append((took, cpu, child_rss))
                    if tshark and len(runs["tshark"]) < args.tshark_repeat:
                        warm(path)
                        took, cpu, rss, _ = measure([tshark, "-r", str(path), "-q", "-z", "conv,tcp"])
                        row(path.name, mb, "tshark -q -z conv,tcp", took, cpu, n, rss)
                        runs["tshark"].append((took, cpu, rss))
                for tool, measured in runs.items():
                    summary(path.name, mb, tool, measured, n)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
