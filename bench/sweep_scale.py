"""Scale benchmark: one full Sentinel sweep over 1,354 registered systems in a network namespace, next to nmap.

    python -m bench.sweep_scale [--systems 1354] [--no-nmap]      (root, iproute2, nftables, nmap)

The estate is one namespace joined to the test bridge, holding one address per system on its loopback
(198.18.16.0/20, routed from the root namespace through the namespace's bridge address, so the root
neighbour table holds one entry, not 1,354). Wildcard listeners serve every address: SSH-like and MySQL-like
TCP ports, HTTP on 80 and HTTPS on 443. nftables makes some ports filtered on some systems and some systems
"down" (every packet dropped). The sweep runs `Sentinel(settings).sweep()` with ICMP, TCP ports (high-risk +
declared), HTTP and TLS probes; a second, port-only sweep and `nmap -sS -T4` over the same hosts and ports
give comparable port-probe rates. Right after the full sweep, `ping -c 3` and curl (`time_total - time_namelookup`) on a
sample of the same hosts and URLs give reference timings, printed beside the sweep's median ICMP `rtt_ms` and
HTTP `latency_ms` on that sample. Everything is torn down afterwards, and each stage is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import random
import re
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.netns import BRIDGE_V4, Host, NetnsLab, sh

ESTATE_NET = ipaddress.ip_network("198.18.16.0/20")
ESTATE_GATEWAY = "198.18.0.2"
OPEN_PORTS = (22, 80, 443, 3306)
FILTERED_PORTS = (3389, 8080)
DECLARED_PORTS = (22, 8080)
BENCH_DEADLINE_S = 480
TIMING_SAMPLE = 40


@dataclass
class Estate:
    """The estate's systems: which addresses are down, which have filtered ports, and the registry file."""

    folder: Path
    host: Host
    addresses: list[str]
    down: list[str]
    filtered: list[str]
    registry: Path
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def up(self) -> list[str]:
        down = set(self.down)
        return [a for a in self.addresses if a not in down]


def estate_addresses(count: int) -> list[str]:
    hosts = ESTATE_NET.hosts()
    return [str(next(hosts)) for _ in range(count)]


def registry_document(addresses: list[str]) -> dict[str, Any]:
    systems = []
    for i, address in enumerate(addresses):
        scheme = "https" if i % 2 else "http"
        systems.append(
            {
                "id": f"sys-{i:04d}",
                "name": f"Estate system {i}",
                "owner": {"department": f"Bureau {i % 40}"},
                "tier": ("city", "district", "street")[i % 3],
                "mlps_level": 2 + i % 2,
                "endpoints": [{"url": f"{scheme}://{address}/"}, {"host": address, "ports": list(DECLARED_PORTS)}],
            }
        )
    return {"scope": {"allow": [str(ESTATE_NET)]}, "systems": systems}


def _nft_rules(down: list[str], filtered: list[str]) -> str:
    def elements(addresses: list[str]) -> str:
        return f" elements = {{ {', '.join(addresses)} }}" if addresses else ""

    ports = ", ".join(map(str, FILTERED_PORTS))
    return f"""table inet estate {{
  set down {{ type ipv4_addr;{elements(down)} }}
  set filtered {{ type ipv4_addr;{elements(filtered)} }}
  chain input {{
    type filter hook input priority 0;
    ip daddr @down drop
    ip daddr @filtered tcp dport {{ {ports} }} drop
  }}
}}
"""


def build_estate(lab: NetnsLab, folder: Path, systems: int, python: str = sys.executable) -> Estate:
    """Create the namespace, its addresses, firewall, listeners and registry file (torn down with `lab`)."""
    if systems > ESTATE_NET.num_addresses - 2:
        raise ValueError(f"at most {ESTATE_NET.num_addresses - 2} systems fit in {ESTATE_NET}")
    host = lab.add_host(ESTATE_GATEWAY)
    addresses = estate_addresses(systems)
    batch = folder / "addresses.ip"
    batch.write_text("".join(f"addr add {a}/32 dev lo\n" for a in addresses))
    host.run("ip", "-batch", str(batch), timeout=120)
    sh("ip", "route", "add", str(ESTATE_NET), "via", ESTATE_GATEWAY, "dev", lab.bridge)
    down = addresses[7::10]  # ~10 % silent
    filtered = [a for i, a in enumerate(addresses) if i % 10 != 7 and i % 4 == 1]  # ~25 % with dropped ports
    rules = folder / "estate.nft"
    rules.write_text(_nft_rules(down, filtered))
    host.run("nft", "-f", str(rules))
    registry = folder / "registry.yaml"
    registry.write_text(yaml.safe_dump(registry_document(addresses), sort_keys=False))
    estate = Estate(folder, host, addresses, down, filtered, registry)
    ready = folder / "ready"
    server = host.popen(
        python, "-m", "bench.sweep_scale", "serve", "--folder", str(folder), cwd=str(Path(__file__).parent.parent)
    )
    estate.servers.append(server)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("estate listeners did not start")
        time.sleep(0.05)
    return estate


# -- the listeners (run inside the namespace) -----------------------------------------------
async def _serve(folder: Path) -> None:
    from aiohttp import web

    from sentinel.demo.certs import self_signed

    cert = self_signed(folder, "estate", ["estate.example"])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert.cert, cert.key)

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html><body>estate</body></html>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/{tail:.*}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    wildcard = "0.0.0.0"
    await web.TCPSite(runner, wildcard, 80, backlog=4096).start()
    await web.TCPSite(runner, wildcard, 443, ssl_context=tls, backlog=4096).start()

    async def greet(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    for port in OPEN_PORTS:
        if port not in (80, 443):
            await asyncio.start_server(greet, wildcard, port, backlog=4096)
    (folder / "ready").write_text("ok")
    await asyncio.Event().wait()


# -- measurements -----------------------------------------------------------------------------
def nmap_sweep(estate: Estate, ports: list[int], timeout: float) -> tuple[float, int]:
    """Seconds nmap -sS -T4 takes over the estate's addresses and ports, and how many hosts it saw up."""
    targets = estate.folder / "targets.txt"
    targets.write_text("\n".join(estate.addresses) + "\n")
    out = estate.folder / "nmap.gnmap"
    start = time.perf_counter()
    args = ["nmap", "-sS", "-T4", "-n", "-p", ",".join(map(str, ports)), "-iL", str(targets), "-oG", str(out)]
    subprocess.run(args, check=True, capture_output=True, timeout=timeout)
    took = time.perf_counter() - start
    up = sum(1 for line in out.read_text().splitlines() if "Ports:" in line)
    return took, up


async def sentinel_sweep(
    estate: Estate, probes: list[str], store: Path, **overrides: Any
) -> tuple[float, dict[str, Any]]:
    """One `Sentinel(settings).sweep()` over the estate with the benchmark's relaxed limits; (seconds, counts)."""
    from sentinel.app import Sentinel
    from sentinel.collectors import BUILTIN_PROBES
    from sentinel.collectors.icmp_probe import IcmpEchoProbe
    from sentinel.config.settings import CollectorSettings, Settings

    BUILTIN_PROBES.setdefault(IcmpEchoProbe.name, IcmpEchoProbe)  # until it is listed in BUILTIN_PROBES
    relaxed: dict[str, Any] = dict(
        probes=probes,
        connect_timeout=1.0,
        tls_timeout=5.0,
        http_timeout=10.0,
        retries=1,
        per_target_rate=1000.0,
        per_target_burst=64.0,
        per_target_concurrency=64,
        global_rate=200_000.0,
        per_target_packet_rate=1000.0,  # raw probes (SYN, echo) have their own budget
        per_target_packet_burst=64.0,
        global_packet_rate=200_000.0,
        max_connections=512,
        max_jobs=256,
    )
    collectors = CollectorSettings.model_validate({**relaxed, **overrides})
    settings = Settings(registry=estate.registry, store=store, collectors=collectors)
    app = Sentinel(settings)
    start = time.perf_counter()
    try:
        outcome = await app.sweep()
    finally:
        app.close()
    took = time.perf_counter() - start
    obs = outcome.observations
    ports = [o for o in obs if o.kind == "port"]
    stats = {
        "icmp_rtt_ms": {
            str(o.data["address"]): o.data["rtt_ms"] for o in obs if o.kind == "icmp" and o.data.get("rtt_ms")
        },
        "http_latency_ms": {
            str(o.data.get("url") or o.target): o.data["latency_ms"]
            for o in obs
            if o.kind == "http" and o.data.get("latency_ms") is not None
        },
        "observations": len(obs),
        "errors": sum(1 for o in obs if o.status.value == "error"),
        "port_probes": len(ports),
        "probes": len(ports) + sum(1 for o in obs if o.kind in ("icmp", "http", "tls")),
        "open": sum(1 for o in ports if o.data.get("state") == "open"),
        "filtered": sum(1 for o in ports if o.data.get("state") == "filtered"),
        "methods": sorted({str(o.data["method"]) for o in obs if "method" in o.data}),
        "icmp_up": sum(1 for o in obs if o.kind == "icmp" and o.data.get("reachable")),
        "http_ok": sum(1 for o in obs if o.kind == "http" and o.data.get("status_code") == 200),
        "tls_ok": sum(1 for o in obs if o.kind == "tls" and o.status.value == "ok"),
        "error_kinds": dict(Counter(f"{o.kind}:{o.data.get('error_kind')}" for o in obs if o.status.value == "error")),
    }
    return took, stats


def ping_median_ms(address: str) -> float | None:
    """The median of `ping -c 3` round trips to one address (None if it did not answer)."""
    args = ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", address]
    out = subprocess.run(args, check=False, capture_output=True, text=True, timeout=30).stdout
    times = [float(t) for t in re.findall(r"time=([\d.]+) ms", out)]
    return statistics.median(times) if times else None


def curl_ms(url: str) -> float | None:
    """curl's `time_total - time_namelookup` for one URL (what `latency_ms` means), in ms; None if it failed."""
    args = ["curl", "-sk", "-o", "/dev/null", "--max-time", "10", "-w", "%{time_total} %{time_namelookup}", url]
    done = subprocess.run(args, check=False, capture_output=True, text=True, timeout=30)
    if done.returncode != 0 or not done.stdout:
        return None
    total, lookup = (float(v) for v in done.stdout.split())
    return (total - lookup) * 1000


def timing_comparison(stats: dict[str, Any], sample: int = TIMING_SAMPLE) -> list[str]:
    """Median Sentinel ICMP / HTTP timings beside ping's and curl's on a sample of the same hosts and URLs."""
    lines = []
    rng = random.Random(11)
    rtts: dict[str, float] = stats["icmp_rtt_ms"]
    if rtts and shutil.which("ping"):
        hosts = rng.sample(sorted(rtts), min(sample, len(rtts)))
        pings = {h: p for h in hosts if (p := ping_median_ms(h)) is not None}
        both = sorted(pings)
        ours = statistics.median(rtts[h] for h in both) if both else float("nan")
        theirs = statistics.median(pings.values()) if both else float("nan")
        lines.append(
            f"ICMP rtt median on {len(both)} sampled hosts: sentinel {ours:.3f} ms, ping -c 3 {theirs:.3f} ms "
            f"(difference {ours - theirs:+.3f} ms; target: within 1 ms)"
        )
    latencies: dict[str, float] = stats["http_latency_ms"]
    if latencies and shutil.which("curl"):
        urls = rng.sample(sorted(latencies), min(sample, len(latencies)))
        curls = {u: c for u in urls if (c := curl_ms(u)) is not None}
        both = sorted(curls)
        ours = statistics.median(latencies[u] for u in both) if both else float("nan")
        theirs = statistics.median(curls.values()) if both else float("nan")
        lines.append(
            f"HTTP latency median on {len(both)} sampled URLs: sentinel {ours:.1f} ms, "
            f"curl time_total - time_namelookup {theirs:.1f} ms "
            f"(ratio {ours / theirs if theirs else float('nan'):.2f}x; target: within 2x)"
        )
        for scheme in ("http", "https"):
            picked = [u for u in both if u.startswith(f"{scheme}://")]
            if picked:
                mine = statistics.median(latencies[u] for u in picked)
                curl = statistics.median(curls[u] for u in picked)
                lines.append(f"  {scheme}:// ({len(picked)} URLs): sentinel {mine:.1f} ms, curl {curl:.1f} ms")
    return lines


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def expire(*_: object) -> None:
        raise TimeoutError(f"benchmark exceeded {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_scale", description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", default="run", choices=["run", "serve"])
    parser.add_argument("--systems", type=int, default=1354)
    parser.add_argument("--no-nmap", action="store_true")
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "serve":
        asyncio.run(_serve(args.folder))
        return 0
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft")):
        print("needs root, iproute2 and nftables", file=sys.stderr)
        return 2
    from sentinel.config.settings import HIGH_RISK_PORTS

    ports = sorted(set(HIGH_RISK_PORTS) | set(DECLARED_PORTS) | {80, 443})
    with deadline(BENCH_DEADLINE_S), tempfile.TemporaryDirectory() as tmp, NetnsLab() as lab:
        folder = Path(tmp)
        t0 = time.perf_counter()
        estate = build_estate(lab, folder, args.systems)
        print(
            f"estate: {len(estate.addresses)} systems ({len(estate.down)} down, {len(estate.filtered)} with "
            f"filtered ports {FILTERED_PORTS}) built in {time.perf_counter() - t0:.1f} s; bridge {BRIDGE_V4}"
        )
        took, stats = asyncio.run(sentinel_sweep(estate, ["icmp", "tcp_ports", "http", "tls"], folder / "full.db"))
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        timings = timing_comparison(stats)
        counts = {k: v for k, v in stats.items() if k not in ("icmp_rtt_ms", "http_latency_ms")}
        print(
            f"full sweep (icmp, tcp_ports, http, tls): {took:.1f} s, {stats['probes']} probes = "
            f"{stats['probes'] / took:,.0f} probes/s, {counts}"
        )
        for line in timings:
            print(line)
        print(f"peak RSS after full sweep: {rss_mb:.0f} MB")
        ptook, pstats = asyncio.run(sentinel_sweep(estate, ["tcp_ports"], folder / "ports.db"))
        rate = pstats["port_probes"] / ptook
        print(
            f"port-only sweep ({','.join(pstats['methods'])}): {pstats['port_probes']} port probes "
            f"in {ptook:.1f} s = {rate:,.0f} probes/s"
        )
        if not args.no_nmap and shutil.which("nmap"):
            ntook, up = nmap_sweep(estate, ports, timeout=300)
            nrate = len(ports) * len(estate.addresses) / ntook
            print(
                f"nmap -sS -T4: {ntook:.1f} s over the same {len(estate.addresses)} hosts x {len(ports)} ports "
                f"({up} up) = {nrate:,.0f} probes/s"
            )
            print(f"sentinel / nmap port-probe rate: {rate / nrate:.2f}x")
        print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
