"""Scale benchmark: `sentinel scan` with every default probe over 1,354 registered systems in a network namespace,
beside nmap.

    python -m bench.sweep_scale [--systems 1354] [--no-nmap] [--default-limits] [--probes a,b]
                                                                (root, iproute2, nftables, nginx, nmap)

The estate is one namespace joined to the test bridge, holding one address per system on its loopback
(198.18.16.0/20, routed from the root namespace through the namespace's bridge address, so the root
neighbour table holds one entry, not 1,354). One nginx serves HTTP on 80 and HTTPS on 443 on every address (its
packaged welcome page, or with `--page portal` a 28 KB portal page; 404 elsewhere); SSH-like and MySQL-like
listeners hold 22 and 3306. nftables drops every packet to ~10 % of the systems ("absent") and two ports (3389,
8080) on every other one.

The full sweep is `sentinel scan --format json` as a user runs it, in a fresh interpreter (so its peak RSS is its
own), with the user's default probe list and the benchmark's relaxed limits (or the defaults, `--default-limits`).
`bench.sweep_meter` breaks it down per probe: jobs, probes sent, span, share of the event loop, bytes received;
and names the slowest jobs and what they ended in. Then a port-only sweep and `nmap -sS -T4` over the same hosts
and ports, and `ping -c 3` / curl (`time_total - time_namelookup`) on a sample of the same hosts and URLs,
printed beside the sweep's median ICMP `rtt_ms` and HTTP `latency_ms`. At default limits it prints the time the
configured rates imply (probes / global rate, the busiest target's probes / per-target rate) beside the measured
one. Everything is torn down afterwards, and each stage is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
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
BENCH_DEADLINE_S = 1500
SWEEP_DEADLINE_S = 900
TIMING_SAMPLE = 40
SLOWEST_SHOWN = 8
#: the steps after probing whose time and memory the report shows
TRACED = (
    "sentinel.app:Sentinel.ingest",
    "sentinel.store.sqlite:SqliteStore.save_observations",
    "sentinel.engine.anomaly:AnomalyEngine.evaluate",
    "sentinel.findings.tracker:FindingTracker.apply",
    "sentinel.cli.scan_cmd:_sweep_findings",
    "sentinel.store.sqlite:SqliteStore.list_findings",
    "sentinel.cli.scan_cmd:render_findings",
    "sentinel.cli.scan_cmd:write_json",
    "asyncio.runners:Runner.close",
    "sentinel.app:Sentinel.ship",
    "sentinel.app:Sentinel.close",
    "sentinel.cli.scan_cmd:ScanProgress.__exit__",
)
#: what the benchmark relaxes (everything else is the default a user gets)
RELAXED: dict[str, Any] = {
    "connect_timeout": 1.0,
    "tls_timeout": 5.0,
    "http_timeout": 10.0,
    "retries": 1,
    "per_target_rate": 1000.0,
    "per_target_burst": 64.0,
    "per_target_concurrency": 64,
    "global_rate": 200_000.0,
    "per_target_packet_rate": 1000.0,  # raw probes (SYN, echo) have their own budget
    "per_target_packet_burst": 64.0,
    "global_packet_rate": 200_000.0,
    "max_connections": 512,
    "max_jobs": 256,
}


@dataclass
class Estate:
    """The estate's systems: which addresses are absent, which have dropped ports, and the registry file."""

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


#: nginx's packaged welcome page (Debian's index.nginx-debian.html): what a stock nginx serves on every address
NGINX_WELCOME = """<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""


def site_page(kind: str = "nginx") -> str:
    """The page every site serves: nginx's welcome page, or ("portal") a portal-like home page of about 28 KB
    with navigation, news items, a style block, scripts and a footer, whose analysis costs ~40 ms of CPU."""
    if kind == "nginx":
        return NGINX_WELCOME
    rng = random.Random(5)
    words = ["政务", "服务", "公开", "通知", "公告", "办事", "指南", "政策", "解读", "民生", "城市", "建设", "发展"]
    nav = "".join(
        f'<li><a href="/section/{i}/index.html">{rng.choice(words)}{rng.choice(words)}</a></li>' for i in range(80)
    )
    items = "".join(
        f'<div class="item"><h3><a href="/news/{i}.html">{"".join(rng.choices(words, k=6))}</a></h3>'
        f'<p>{"".join(rng.choices(words, k=40))}</p><span class="date">2026-0{1 + i % 9}-{10 + i % 18}</span></div>'
        for i in range(60)
    )
    return textwrap.dedent(f"""\
        <!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>某市人民政府门户网站</title>
        <style>.nav li{{display:inline}} .item{{margin:4px}} .date{{color:#888}} #footer a{{color:#333}}</style>
        <script src="/js/jquery.min.js"></script><script src="/js/site.js"></script></head>
        <body><div id="header"><h1>某市人民政府</h1></div><ul class="nav">{nav}</ul>
        <div id="main">{items}</div>
        <div id="footer"><a href="/about.html">关于我们</a> <a href="/map.html">网站地图</a> 主办：某市政府</div>
        </body></html>
        """)


def nginx_config(prefix: Path, site: Path, cert: Path, key: Path) -> str:
    """One nginx on every address of the namespace: HTTP on 80, HTTPS on 443, the packaged defaults otherwise."""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]  # the hard limit: the most it may raise its own to
    files = 65536 if files == resource.RLIM_INFINITY else min(files, 65536)
    return f"""daemon off;
user root;  # the benchmark's folders are private to root
worker_processes 2;
worker_rlimit_nofile {files};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log crit;
events {{ worker_connections {min(16384, files // 2)}; }}
http {{
    access_log off;
    types {{ text/html html; application/javascript js; }}
    default_type application/octet-stream;
{temp}
    ssl_session_cache shared:SSL:20m;
    server {{
        listen 80 backlog=4096;
        listen 443 ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {site};
        index index.html;
    }}
}}
"""


def _start_nginx(host: Host, folder: Path, page: str) -> subprocess.Popen[bytes]:
    from sentinel.demo.certs import self_signed

    nginx = shutil.which("nginx")
    if nginx is None:
        raise RuntimeError("needs nginx")
    prefix, site = folder / "nginx", folder / "site"
    for d in (prefix, site):
        d.mkdir(exist_ok=True)
    (site / "index.html").write_text(site_page(page), encoding="utf-8")
    cert = self_signed(folder, "estate", ["estate.example"])
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(prefix, site, cert.cert, cert.key))
    return host.popen(nginx, "-p", str(prefix), "-c", str(conf), stderr=subprocess.DEVNULL)


def build_estate(
    lab: NetnsLab, folder: Path, systems: int, python: str = sys.executable, page: str = "nginx"
) -> Estate:
    """Create the namespace, its addresses, firewall, listeners and registry file (torn down with `lab`)."""
    if systems > ESTATE_NET.num_addresses - 2:
        raise ValueError(f"at most {ESTATE_NET.num_addresses - 2} systems fit in {ESTATE_NET}")
    host = lab.add_host(ESTATE_GATEWAY)
    addresses = estate_addresses(systems)
    batch = folder / "addresses.ip"
    batch.write_text("".join(f"addr add {a}/32 dev lo\n" for a in addresses))
    host.run("ip", "-batch", str(batch), timeout=120)
    sh("ip", "route", "add", str(ESTATE_NET), "via", ESTATE_GATEWAY, "dev", lab.bridge)
    down = addresses[7::10]  # ~10 % absent: every packet dropped
    absent = set(down)
    filtered = [a for a in addresses if a not in absent]  # two ports dropped on every other host
    rules = folder / "estate.nft"
    rules.write_text(_nft_rules(down, filtered))
    host.run("nft", "-f", str(rules))
    registry = folder / "registry.yaml"
    registry.write_text(yaml.safe_dump(registry_document(addresses), sort_keys=False))
    estate = Estate(folder, host, addresses, down, filtered, registry)
    ready = folder / "ready"
    root = str(Path(__file__).parent.parent)
    estate.servers.append(host.popen(python, "-m", "bench.sweep_scale", "serve", "--folder", str(folder), cwd=root))
    estate.servers.append(_start_nginx(host, folder, page))
    deadline = time.monotonic() + 30
    probe = [*host.cmd("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-k"), f"https://{addresses[0]}/"]
    while not ready.exists() or sh(*probe, check=False).stdout != "200":
        if any(s.poll() is not None for s in estate.servers) or time.monotonic() > deadline:
            raise RuntimeError("estate listeners did not start")
        time.sleep(0.1)
    return estate


# -- the SSH-like and MySQL-like listeners (run inside the namespace) ------------------------------------------
async def _serve(folder: Path) -> None:
    async def greet(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    for port in OPEN_PORTS:
        if port not in (80, 443):  # nginx's
            await asyncio.start_server(greet, "0.0.0.0", port, backlog=4096)
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


def sweep_ports() -> list[int]:
    """The ports a default tcp_ports job scans on an estate host: high-risk, declared, the URL's."""
    from sentinel.config.settings import HIGH_RISK_PORTS

    return sorted(set(HIGH_RISK_PORTS) | set(DECLARED_PORTS) | {80, 443})


async def sentinel_sweep(
    estate: Estate, probes: list[str], store: Path, **overrides: Any
) -> tuple[float, dict[str, Any]]:
    """One `Sentinel(settings).sweep()` in this process with the benchmark's relaxed limits; (seconds, counts)."""
    from sentinel.app import Sentinel
    from sentinel.config.settings import CollectorSettings, Settings

    collectors = CollectorSettings.model_validate({**RELAXED, "probes": probes, **overrides})
    settings = Settings(registry=estate.registry, store=store, collectors=collectors)
    app = Sentinel(settings)
    start = time.perf_counter()
    try:
        await app.sweep()
    finally:
        app.close()
    return time.perf_counter() - start, store_stats(store)


def store_stats(store: Path) -> dict[str, Any]:
    """What the sweep recorded (the latest observation per kind, system and target), read back from the store."""
    with contextlib.closing(sqlite3.connect(store)) as db:
        rows = [(k, st, json.loads(d)) for k, st, d in db.execute("SELECT kind, status, data FROM observations_latest")]
    ports = [d for k, _, d in rows if k == "port"]
    return {
        "icmp_rtt_ms": {str(d["address"]): d["rtt_ms"] for k, _, d in rows if k == "icmp" and d.get("rtt_ms")},
        "http_latency_ms": {
            str(d["url"]): d["latency_ms"] for k, _, d in rows if k == "http" and d.get("latency_ms") is not None
        },
        "observations": len(rows),
        "by_kind": dict(Counter(k for k, _, _ in rows)),
        "errors": sum(1 for _, st, _ in rows if st == "error"),
        "port_probes": len(ports),
        "open": sum(1 for d in ports if d.get("state") == "open"),
        "filtered": sum(1 for d in ports if d.get("state") == "filtered"),
        "methods": sorted({str(d["method"]) for _, _, d in rows if "method" in d}),
        "icmp_up": sum(1 for k, _, d in rows if k == "icmp" and d.get("reachable")),
        "http_ok": sum(1 for k, _, d in rows if k == "http" and d.get("status_code") == 200),
        "tls_ok": sum(1 for k, st, _ in rows if k == "tls" and st == "ok"),
        "error_kinds": dict(Counter(f"{k}:{d.get('error_kind')}" for k, st, d in rows if st == "error")),
    }


def default_probes() -> list[str]:
    from sentinel.config.settings import default_probes as defaults

    return defaults()


def limits(default_limits: bool) -> dict[str, Any]:
    """The collectors settings of a sweep: the user's defaults, or those with the benchmark's relaxations."""
    from sentinel.config.settings import CollectorSettings

    fields = ("connect_timeout", "tls_timeout", "http_timeout", "retries", *list(RELAXED)[4:], "job_timeout")
    defaults = CollectorSettings.model_validate({})
    chosen = {f: getattr(defaults, f) for f in fields}
    return chosen if default_limits else {**chosen, **RELAXED}


def run_cli_sweep(
    estate: Estate, tag: str, probes: list[str], default_limits: bool, profile: Path | None = None
) -> dict[str, Any]:
    """`sentinel scan --format json` in a fresh interpreter under `bench.sweep_meter`; its report, with the
    store's counts and the command's peak RSS."""
    folder = estate.folder
    config = folder / f"{tag}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "registry": str(estate.registry),
                "store": str(folder / f"{tag}.db"),
                "collectors": {"probes": probes, **limits(default_limits)},
            }
        )
    )
    report = folder / f"{tag}.json"
    cmd = [sys.executable, "-m", "bench.sweep_scale", "sweep", "--config", str(config), "--out", str(report)]
    if profile is not None:
        spy = shutil.which("py-spy")
        if spy is None:
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        cmd = [spy, "record", "--nonblocking", "-r", "50", "-f", "raw", "-o", str(profile), "--", *cmd]
    root = str(Path(__file__).parent.parent)
    servers = [int(p) for p in sh("ip", "netns", "pids", estate.host.name, check=False).stdout.split()]
    servers_before, machine_before, start = cpu_seconds(servers), machine_busy_seconds(), time.perf_counter()
    with open(folder / f"{tag}.stdout", "wb") as out, open(folder / f"{tag}.stderr", "wb") as err:
        subprocess.run(cmd, stdout=out, stderr=err, cwd=root, check=False, timeout=SWEEP_DEADLINE_S)
    wall = time.perf_counter() - start
    servers_cpu, machine_cpu = cpu_seconds(servers) - servers_before, machine_busy_seconds() - machine_before
    if not report.exists():
        raise RuntimeError(f"the sweep wrote no report: {(folder / f'{tag}.stderr').read_text()[-2000:]}")
    result: dict[str, Any] = json.loads(report.read_text())
    result["store"] = store_stats(folder / f"{tag}.db")
    result.update(servers_cpu_s=servers_cpu, machine_cpu_s=machine_cpu, machine_wall_s=wall)
    result["json_output_bytes"] = (folder / f"{tag}.stdout").stat().st_size
    return result


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (from /proc; 0 for those gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (all processes: the machine is shared)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _child_sweep(config: Path, out: Path) -> int:
    """The `sweep` command: `sentinel scan` as a user runs it, metered, in this (fresh) interpreter."""
    from bench.sweep_meter import Meter
    from sentinel.cli.main import main as sentinel_main

    meter = Meter().install().trace(*TRACED)
    start = time.perf_counter()
    rc = sentinel_main(["scan", "--config", str(config), "--format", "json"])
    took = time.perf_counter() - start
    sys.stdout.flush()
    with contextlib.suppress(ImportError):  # reaped, so their CPU time shows in RUSAGE_CHILDREN
        from sentinel.collectors.offload import shutdown

        shutdown()
    report = meter.report()
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    report.update(
        rc=rc,
        took_s=round(took, 3),
        maxrss_mb=own.ru_maxrss / 1024,
        cpu_user_s=own.ru_utime,
        cpu_sys_s=own.ru_stime,
        workers_cpu_s=workers.ru_utime + workers.ru_stime,  # the HTML analysis processes, once they have exited
        workers_maxrss_mb=workers.ru_maxrss / 1024,
    )
    out.write_text(json.dumps(report))
    return 0


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


# -- printing ----------------------------------------------------------------------------------------------
def breakdown(report: dict[str, Any]) -> list[str]:
    """The per-probe table: jobs, probes sent, span, job times, loop share, bytes received, errors."""
    lines = [
        f"{'probe':<14}{'jobs':>6}{'admits':>8}{'TCP':>7}{'packets':>9}{'span s':>8}{'job p50':>8}{'job max':>8}"
        f"{'loop s':>8}{'loop %':>7}{'MB recv':>9}  error kinds"
    ]
    for name, p in sorted(report["probes"].items(), key=lambda kv: -kv[1]["loop_s"]):
        errors = ", ".join(f"{k}:{v}" for k, v in sorted(p["errors"].items())) or "-"
        lines.append(
            f"{name:<14}{p['jobs']:>6}{p['connections']:>8}{p.get('tcp_connects', 0):>7}{p['packets']:>9}"
            f"{p['span_s'] or 0:>8.1f}"
            f"{p['job_p50_s'] or 0:>8.2f}{p['job_max_s'] or 0:>8.2f}{p['loop_s']:>8.1f}"
            f"{100 * (p['loop_share'] or 0):>6.1f}%{p['bytes_received'] / 1e6:>9.1f}  {errors}"
        )
    return lines


def slowest(report: dict[str, Any], shown: int = SLOWEST_SHOWN) -> list[str]:
    jobs = report["slowest_jobs"]
    lines = [
        f"jobs: {report['jobs']}; half had finished at {report['ends_p50_s']:.1f} s, 99 % at "
        f"{report['ends_p99_s']:.1f} s, the last at {report['span_s']:.1f} s"
    ]
    systems: dict[str, dict[str, Any]] = {}
    for job in jobs:
        systems.setdefault(job["system_id"], job)
    lines.append("slowest systems (their slowest job: probe, target, seconds, started at, ended in):")
    for job in list(systems.values())[:shown]:
        lines.append(
            f"  {job['system_id']}: {job['probe']} {job['target']} {job['seconds']:.2f} s "
            f"(from {job['start']:.1f} s) -> {job['ended_in']}"
        )
    return lines


def rate_bound(report: dict[str, Any], collectors: dict[str, Any]) -> list[str]:
    """The sweep time the configured rates alone imply, beside the measured one."""
    conns, packets = report["connections"], report["packets"]
    bounds = {
        "connections / global_rate": max(0.0, conns - collectors["global_rate"] / 10) / collectors["global_rate"],
        "busiest target's connections / per_target_rate": max(
            0.0, report["max_target_connections"] - collectors["per_target_burst"]
        )
        / collectors["per_target_rate"],
        "packets / global_packet_rate": max(0.0, packets - collectors["global_packet_rate"] / 10)
        / collectors["global_packet_rate"],
        "busiest target's packets / per_target_packet_rate": max(
            0.0, report["max_target_packets"] - collectors["per_target_packet_burst"]
        )
        / collectors["per_target_packet_rate"],
    }
    worst = max(bounds, key=lambda k: bounds[k])
    lines = [
        f"rate bound: {bounds[worst]:.1f} s ({worst}); measured {report['span_s']:.1f} s "
        f"= {report['span_s'] / bounds[worst] if bounds[worst] else float('nan'):.2f}x the bound"
    ]
    lines += [f"  {k}: {v:.1f} s" for k, v in bounds.items()]
    lines.append(
        f"  ({conns} connections, busiest target {report['max_target_connections']}; {packets} packets, "
        f"busiest target {report['max_target_packets']}; {report['targets']} targets)"
    )
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
    parser.add_argument("command", nargs="?", default="run", choices=["run", "serve", "sweep"])
    parser.add_argument("--systems", type=int, default=1354)
    parser.add_argument("--no-nmap", action="store_true")
    parser.add_argument("--default-limits", action="store_true", help="the user's default rates and timeouts")
    parser.add_argument("--probes", help="comma-separated probes (default: the default sweep's)")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of the full sweep, written here")
    parser.add_argument("--no-port-only", action="store_true", help="skip the port-only sweep")
    parser.add_argument(
        "--page", choices=["nginx", "portal"], default="nginx", help="nginx's welcome page, or a 28 KB portal page"
    )
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "serve":
        asyncio.run(_serve(args.folder))
        return 0
    if args.command == "sweep":
        return _child_sweep(args.config, args.out)
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "nginx")):
        print("needs root, iproute2, nftables and nginx", file=sys.stderr)
        return 2
    probes = args.probes.split(",") if args.probes else default_probes()
    ports = sweep_ports()
    with deadline(BENCH_DEADLINE_S), tempfile.TemporaryDirectory() as tmp, NetnsLab() as lab:
        folder = Path(tmp)
        t0 = time.perf_counter()
        estate = build_estate(lab, folder, args.systems, page=args.page)
        print(
            f"estate: {len(estate.addresses)} systems ({len(estate.down)} absent, ports {FILTERED_PORTS} dropped on "
            f"the other {len(estate.filtered)}), nginx on 80/443 ({args.page} page), "
            f"built in {time.perf_counter() - t0:.1f} s; "
            f"bridge {BRIDGE_V4}; machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        )
        collectors = limits(args.default_limits)
        which = "default limits" if args.default_limits else "relaxed limits"
        print(f"full sweep: sentinel scan --format json, probes {','.join(probes)}; {which}: {collectors}")
        report = run_cli_sweep(estate, "full", probes, args.default_limits, args.profile)
        stats = report["store"]
        print(
            f"full sweep: {report['took_s']:.1f} s (jobs {report['span_s']:.1f} s), "
            f"peak RSS {report['maxrss_mb']:.0f} MB, "
            f"{report['connections']} connections + {report['packets']} packets, {stats['observations']} observations "
            f"({stats['errors']} errors), JSON output {report['json_output_bytes'] / 1e6:.1f} MB, exit {report['rc']}"
        )
        print(
            f"  CPU: sentinel {report['cpu_user_s']:.1f} s user + {report['cpu_sys_s']:.1f} s system, its analysis "
            f"workers {report['workers_cpu_s']:.1f} s (peak RSS {report['workers_maxrss_mb']:.0f} MB), the estate's "
            f"servers {report['servers_cpu_s']:.1f} s; the whole machine {report['machine_cpu_s']:.1f} s busy of "
            f"{os.cpu_count() or 1} x {report['machine_wall_s']:.1f} s (shared with other work)"
        )
        for line in breakdown(report):
            print("  " + line)
        print(
            f"  callbacks held the event loop {report['loop_s']:.1f} s in all (jobs span {report['span_s']:.1f} s, the "
            f"command {report['took_s']:.1f} s); RSS: peak while probing "
            f"{report['rss_peak_probing_mb']} MB, {report['rss_at_probing_end_mb']} MB when the last job ended, "
            f"peak after (ingest, output) {report['rss_peak_after_mb']} MB"
        )
        for phase in report["phases"]:
            print(
                f"  {phase['name']}: {phase['seconds']:.1f} s from {phase['start']:.1f} s, RSS {phase['rss_before_mb']}"
                f" -> {phase['rss_after_mb']} MB (sampled peak {phase['rss_peak_mb']} MB; high-water mark "
                f"{phase['hwm_before_mb']} -> {phase['hwm_after_mb']} MB)"
            )
        for rise in report["hwm_rises"]:
            print(f"  RSS high-water {rise['from_mb']} -> {rise['to_mb']} MB at {rise['at']:.1f} s in {rise['main']}")
        for line in slowest(report):
            print("  " + line)
        print(f"  counts: { {k: v for k, v in stats.items() if k not in ('icmp_rtt_ms', 'http_latency_ms')} }")
        if args.default_limits:
            for line in rate_bound(report, collectors):
                print(line)
        for line in timing_comparison(stats):
            print(line)
        ports_part = report["probes"].get("tcp_ports", {}).get("span_s")
        rate = None
        if not args.no_port_only:
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
            print(
                f"whole default sweep {report['took_s']:.1f} s vs nmap port scan {ntook:.1f} s; the sweep's port part "
                f"(tcp_ports jobs, first start to last end) {ports_part or float('nan'):.1f} s"
            )
            if rate is not None:
                print(f"sentinel / nmap port-probe rate (port-only sweep): {rate / nrate:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
