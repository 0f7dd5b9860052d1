"""A port-scanning estate for the scan benchmarks: many addresses in one network namespace, next to nmap.

One namespace joins the lab bridge and holds one /32 per host on its loopback (routed from the root namespace
through the namespace's bridge address, so the root neighbour table holds one entry). Wildcard listeners
accept (and close) on the open ports; nftables drops chosen ports per address, and whole addresses.

    python -m bench.raw_estate serve FOLDER PORT...       (runs inside the namespace: the listeners)
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.netns import Host, NetnsLab, sh


@dataclass
class RawEstate:
    folder: Path
    host: Host
    network: str
    addresses: list[str]
    open_ports: tuple[int, ...]
    dropped: dict[str, tuple[int, ...]]  # address -> dropped ports
    silent: list[str]  # addresses that drop every packet
    servers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def expected(self, address: str, port: int) -> str:
        """The state the estate was built to show (what both scanners must report)."""
        if address in self.silent or port in self.dropped.get(address, ()):
            return "filtered"
        return "open" if port in self.open_ports else "closed"


def _nft(silent: Sequence[str], dropped: Mapping[str, Sequence[int]]) -> str:
    lines = ["table inet rawestate {", "  chain input {", "    type filter hook input priority 0;"]
    if silent:
        lines.append(f"    ip daddr {{ {', '.join(silent)} }} drop")
    for address, ports in dropped.items():
        if ports:
            lines.append(f"    ip daddr {address} tcp dport {{ {', '.join(map(str, ports))} }} drop")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def build_raw_estate(
    lab: NetnsLab,
    folder: Path,
    network: str,
    gateway: str,
    count: int,
    open_ports: Sequence[int],
    dropped: Mapping[int, Sequence[int]],
    silent: Sequence[int],
) -> RawEstate:
    """`dropped` and `silent` are host indexes; everything is torn down with `lab`."""
    net = ipaddress.ip_network(network)
    if count > net.num_addresses - 2:
        raise ValueError(f"at most {net.num_addresses - 2} hosts fit in {network}")
    host = lab.add_host(gateway)
    hosts = net.hosts()
    addresses = [str(next(hosts)) for _ in range(count)]
    batch = folder / "addresses.ip"
    batch.write_text("".join(f"addr add {a}/32 dev lo\n" for a in addresses))
    host.run("ip", "-batch", str(batch), timeout=120)
    sh("ip", "route", "replace", network, "via", gateway, "dev", lab.bridge)
    drop = {addresses[i]: tuple(p) for i, p in dropped.items()}
    quiet = [addresses[i] for i in silent]
    rules = folder / "rawestate.nft"
    rules.write_text(_nft(quiet, drop))
    host.run("nft", "-f", str(rules), timeout=60)
    estate = RawEstate(folder, host, network, addresses, tuple(open_ports), drop, quiet)
    ready = folder / "ready"
    root = str(Path(__file__).resolve().parent.parent)
    server = host.popen(sys.executable, "-m", "bench.raw_estate", "serve", str(folder), *map(str, open_ports), cwd=root)
    estate.servers.append(server)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("estate listeners did not start")
        time.sleep(0.05)
    return estate


def nmap_states(
    addresses: Sequence[str], ports: Sequence[int], folder: Path, *args: str, timeout: float = 600
) -> tuple[float, dict[tuple[str, int], str]]:
    """(seconds, {(address, port): state}) of one nmap run (`args` e.g. -sS -T4 -Pn) over the addresses."""
    targets = folder / "nmap-targets.txt"
    targets.write_text("\n".join(addresses) + "\n")
    out = folder / "nmap.gnmap"
    cmd = ["nmap", *args, "-n", "-p", ",".join(map(str, ports)), "-iL", str(targets), "-oG", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    took = time.perf_counter() - start
    states: dict[tuple[str, int], str] = {}
    for line in out.read_text().splitlines():
        match = re.match(r"Host: (\S+) .*Ports: (.*?)(\tIgnored State: (\w+) \(\d+\))?$", line)
        if not match:
            continue
        address, listed, ignored = match.group(1), match.group(2), match.group(4)
        seen = {int(p): s for p, s in re.findall(r"(\d+)/([a-z|]+)/tcp", listed)}
        for port in ports:  # nmap folds the most common state into "Ignored State"
            state = seen.get(port, ignored or "unknown")
            states[(address, port)] = "filtered" if state == "open|filtered" else str(state)
    return took, states


def agreement(ours: Mapping[tuple[str, int], str], theirs: Mapping[tuple[str, int], str]) -> tuple[int, int, list[str]]:
    """(agreeing, compared, a few disagreements) over the keys both scans have."""
    keys = sorted(set(ours) & set(theirs))
    differ = [
        f"{a}:{p} sentinel={ours[(a, p)]} nmap={theirs[(a, p)]}" for a, p in keys if ours[(a, p)] != theirs[(a, p)]
    ]
    return len(keys) - len(differ), len(keys), differ[:5]


async def _serve(folder: Path, ports: Sequence[int]) -> None:
    async def close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    for port in ports:
        await asyncio.start_server(close, "0.0.0.0", port, backlog=4096)
    (folder / "ready").write_text("ok")
    await asyncio.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        asyncio.run(_serve(Path(sys.argv[2]), [int(p) for p in sys.argv[3:]]))
    else:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
