"""Port discovery at scale: nmap's top 1,000 TCP ports over the estate, beside `nmap --top-ports 1000` (defect 7).

    python -m bench.port_discovery_scale [--hosts 1354] [--nmap-sample 100] [--default-rates]

Estate (198.18.80.0/21, one namespace): every host listens on 22, 80, 443 (declared) and 8081 (undeclared);
a quarter drop 3389 and 5900 (filtered), a tenth drop everything. Sentinel runs one `port_discovery` sweep
(the benchmark's relaxed packet rates unless --default-rates); nmap `-sS -T4 -Pn --top-ports 1000` runs over
a random sample of the same hosts (the whole estate would take nmap as long again; the sample is stated).
Prints both times, the probe rates, and per-host agreement (open ports, closed and filtered counts).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.raw_estate import RawEstate, build_raw_estate, nmap_states
from bench.sweep_scale import deadline
from tests.netns import NetnsLab

NETWORK, GATEWAY = "198.18.80.0/21", "198.18.0.80"
DECLARED = (22, 80, 443)
OPEN = (*DECLARED, 8081)
DROPPED = (3389, 5900)
RELAXED: dict[str, Any] = dict(
    per_target_packet_rate=2000.0, per_target_packet_burst=200.0, global_packet_rate=100_000.0, max_jobs=256
)


def registry_file(estate: RawEstate) -> Path:
    systems = [
        {
            "id": f"d{i:04d}",
            "name": f"Host {i}",
            "owner": {"department": f"Bureau {i % 40}"},
            "tier": "city",
            "mlps_level": 3,
            "endpoints": [{"host": address, "ports": list(DECLARED)}],
        }
        for i, address in enumerate(estate.addresses)
    ]
    path = estate.folder / "registry.yaml"
    path.write_text(yaml.safe_dump({"scope": {"allow": [estate.network]}, "systems": systems}))
    return path


async def sentinel_discovery(
    estate: RawEstate, store: Path, relaxed: bool
) -> tuple[float, dict[str, dict[str, Any]], dict[str, int]]:
    """(seconds, observation data by address, the SYN receiver's counters: kernel drops, resends, in-flight cap)."""
    from sentinel.app import Sentinel
    from sentinel.collectors.network import ScopedNetwork
    from sentinel.config.settings import CollectorSettings, Settings

    overrides = RELAXED if relaxed else {}
    collectors = CollectorSettings(probes=["port_discovery"], job_timeout=900, **overrides)
    app = Sentinel(Settings(registry=registry_file(estate), store=store, collectors=collectors))
    net = ScopedNetwork(app.registry.scope, collectors)
    start = time.perf_counter()
    try:
        outcome = await app.sweep(net=net)
        took = time.perf_counter() - start
        receiver = net.raw_receive_stats()
    finally:
        await net.close()
        app.close()
    return took, {str(o.data.get("address") or o.target): dict(o.data) for o in outcome.observations}, receiver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.port_discovery_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=1354)
    parser.add_argument("--nmap-sample", type=int, default=100)
    parser.add_argument("--default-rates", action="store_true", help="Sentinel's default packet rates")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "nmap")):
        print("needs root, iproute2, nftables and nmap", file=sys.stderr)
        return 2
    from sentinel.collectors.top_ports import TOP_TCP_PORTS

    ports = list(TOP_TCP_PORTS)
    dropped = {i: DROPPED for i in range(args.hosts) if i % 4 == 1}
    silent = [i for i in range(args.hosts) if i % 10 == 7]
    with deadline(1500), tempfile.TemporaryDirectory() as tmp, NetnsLab() as lab:
        folder = Path(tmp)
        t0 = time.perf_counter()
        estate = build_raw_estate(lab, folder, NETWORK, GATEWAY, args.hosts, OPEN, dropped, silent)
        print(
            f"estate: {args.hosts} hosts ({len(silent)} silent, {len(dropped)} with {DROPPED} dropped) "
            f"built in {time.perf_counter() - t0:.1f} s; {len(ports)} ports each"
        )
        took, ours, receiver = asyncio.run(sentinel_discovery(estate, folder / "d.db", not args.default_rates))
        probed = sum(int(d.get("ports_probed", 0)) for d in ours.values())
        complete = sum(1 for d in ours.values() if d.get("complete"))
        undeclared = sum(1 for d in ours.values() if d.get("undeclared_open"))
        rates = "default packet rates" if args.default_rates else f"relaxed {RELAXED}"
        print(
            f"sentinel port_discovery ({rates}): {took:.1f} s for {probed:,} ports = {probed / took:,.0f} ports/s; "
            f"{complete}/{len(ours)} hosts complete, {undeclared} with an undeclared open port"
        )
        unknown = sum(int(d.get("unknown_count", 0)) for d in ours.values())
        print(
            f"SYN receiver: {receiver['receive_drops']} answers dropped by the kernel, {receiver['lost']} SYNs resent "
            f"for it, {unknown} ports could not be told; at most {receiver['peak_in_flight']} SYNs in flight "
            f"(cap {receiver['in_flight_limit']})"
        )
        truth = sum(
            1
            for address in estate.addresses
            if ours.get(address, {}).get("open_ports") == [p for p in ports if estate.expected(address, p) == "open"]
            and ours.get(address, {}).get("filtered_count")
            == sum(1 for p in ports if estate.expected(address, p) == "filtered")
        )
        print(f"per-host match with the built estate (open ports, filtered count): {truth}/{len(estate.addresses)}")
        sample = sorted(random.Random(7).sample(estate.addresses, min(args.nmap_sample, len(estate.addresses))))
        ntook, theirs = nmap_states(sample, ports, folder, "-sS", "-T4", "-Pn", timeout=1200)
        print(
            f"nmap -sS -T4 -Pn --top-ports 1000 on a sample of {len(sample)} of the same hosts: {ntook:.1f} s "
            f"= {len(sample) * len(ports) / ntook:,.0f} ports/s (sentinel: {probed / took:,.0f} ports/s)"
        )
        agree, differ = 0, list[str]()
        for address in sample:
            mine = ours.get(address, {})
            states = [theirs.get((address, p), "unknown") for p in ports]
            nmap_open = [p for p, s in zip(ports, states, strict=True) if s == "open"]
            same = (
                mine.get("open_ports") == nmap_open
                and mine.get("closed_count") == states.count("closed")
                and mine.get("filtered_count") == states.count("filtered")
            )
            agree += same
            if not same and len(differ) < 5:
                differ.append(f"{address}: sentinel {mine.get('open_ports')} nmap {nmap_open}")
        print(f"per-host agreement with nmap (open ports, closed and filtered counts): {agree}/{len(sample)} {differ}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
