"""Port-scan wall time at default settings beside `nmap -sS -T4`, with the port-state agreement (issue 11, defect 6).

    python -m bench.port_scan_timing [--hosts 50]        (root, iproute2, nftables, nmap)

Estate: `--hosts` addresses (198.18.70.0/24) in one namespace; every host is registered with declared ports
22, 80, 443, 8080, 8443, so `tcp_ports` probes those plus the 15 high-risk ports (20 ports). 22, 80, 443 and
3306 listen; on every host a third of the 20 ports is dropped (filtered), and one host drops everything.
Sentinel runs one `tcp_ports` sweep with the *default* collector settings; nmap runs `-sS -T4 -Pn` (every
host scanned, as Sentinel does) over the same hosts and ports. Prints both wall times and the agreement.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.raw_estate import RawEstate, agreement, build_raw_estate, nmap_states
from bench.sweep_scale import deadline
from tests.netns import NetnsLab

NETWORK, GATEWAY = "198.18.70.0/24", "198.18.0.70"
DECLARED = (22, 80, 443, 8080, 8443)
OPEN = (22, 80, 443, 3306)
SILENT_INDEX = 7


def scan_ports() -> list[int]:
    from sentinel.config.settings import HIGH_RISK_PORTS

    return sorted(set(HIGH_RISK_PORTS) | set(DECLARED))


def build(lab: NetnsLab, folder: Path, hosts: int) -> RawEstate:
    ports = scan_ports()
    dropped = {i: tuple(p for j, p in enumerate(ports) if (i + j) % 3 == 0) for i in range(hosts)}
    return build_raw_estate(lab, folder, NETWORK, GATEWAY, hosts, OPEN, dropped, [SILENT_INDEX])


def registry_file(estate: RawEstate) -> Path:
    systems = [
        {
            "id": f"h{i:03d}",
            "name": f"Host {i}",
            "owner": {"department": "IT"},
            "tier": "city",
            "mlps_level": 3,
            "endpoints": [{"host": address, "ports": list(DECLARED)}],
        }
        for i, address in enumerate(estate.addresses)
    ]
    path = estate.folder / "registry.yaml"
    path.write_text(yaml.safe_dump({"scope": {"allow": [estate.network]}, "systems": systems}))
    return path


async def sentinel_scan(estate: RawEstate, store: Path) -> tuple[float, float, dict[tuple[str, int], str], str]:
    """(sweep seconds, of which probing, states, method): one `Sentinel.sweep()` whose network part is timed too."""
    from sentinel.app import Sentinel
    from sentinel.collectors import runner
    from sentinel.config.settings import CollectorSettings, Settings

    settings = Settings(registry=registry_file(estate), store=store, collectors=CollectorSettings(probes=["tcp_ports"]))
    app = Sentinel(settings)
    probing = 0.0
    real = runner.run_sweep_jobs

    async def timed(*args: Any, **kwargs: Any) -> Any:  # the jobs alone: no rule loading, store or engines
        nonlocal probing
        t0 = time.perf_counter()
        try:
            return await real(*args, **kwargs)
        finally:
            probing = time.perf_counter() - t0

    runner.run_sweep_jobs = timed
    start = time.perf_counter()
    try:
        outcome = await app.sweep()
    finally:
        runner.run_sweep_jobs = real
        app.close()
    took = time.perf_counter() - start
    ports = [o for o in outcome.observations if o.kind == "port"]
    methods = ",".join(sorted({str(o.data.get("method")) for o in ports}))
    return took, probing, {(str(o.data["address"]), int(o.data["port"])): str(o.data["state"]) for o in ports}, methods


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.port_scan_timing", description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "nmap")):
        print("needs root, iproute2, nftables and nmap", file=sys.stderr)
        return 2
    ports = scan_ports()
    with deadline(600), tempfile.TemporaryDirectory() as tmp, NetnsLab() as lab:
        folder = Path(tmp)
        estate = build(lab, folder, args.hosts)
        print(f"estate: {args.hosts} hosts x {len(ports)} ports, 1/3 of the ports dropped, host {SILENT_INDEX} silent")
        took, probing, ours, method = asyncio.run(sentinel_scan(estate, folder / "s.db"))
        ntook, theirs = nmap_states(estate.addresses, ports, folder, "-sS", "-T4", "-Pn")
        truth = {(a, p): estate.expected(a, p) for a in estate.addresses for p in ports}
        agree, total, differ = agreement(ours, theirs)
        right, _, wrong = agreement(ours, truth)
        print(f"sentinel tcp_ports ({method}, default settings): scan {probing:.2f} s (whole sweep {took:.2f} s)")
        print(f"nmap -sS -T4 -Pn: {ntook:.2f} s")
        print(f"sentinel / nmap wall time: scan {probing / ntook:.2f}x, whole sweep {took / ntook:.2f}x")
        print(f"port states: sentinel and nmap agree on {agree}/{total}{' ' + str(differ) if differ else ''}")
        print(
            f"port states: sentinel matches the built estate on {right}/{len(truth)}{' ' + str(wrong) if wrong else ''}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
