"""Every detector keeps at most MAX_PER_KIND observations of a kind (of a list, for scans and sweeps), and every
observation it keeps says in `capture.unreported` how many of its list were left out: one capture with more
than the cap of every kind, from real frames, through the whole analysis."""

from __future__ import annotations

from collections import defaultdict

import pytest

from bench.pcapgen import PcapWriter, arp_reply, dns_query, icmp_echo, tcp, udp
from sentinel.models import Observation
from sentinel.registry.loader import load_registry
from sentinel.traffic.analyze import analyze_file
from sentinel.traffic.detectors.base import MAX_PER_KIND, UNREPORTED
from sentinel.traffic.intel import load_intel

EXTRA = 100
N = MAX_PER_KIND + EXTRA
PORTAL, LISTED = "10.20.1.1", "203.0.113.5"
REGISTRY = f"""
scope:
  allow: ["10.20.0.0/16"]
systems:
  - id: portal
    name: Portal
    owner: {{department: IT}}
    tier: city
    mlps_level: 3
    endpoints:
      - host: {PORTAL}
        ports: [80]
"""
VALID_ID = b"11010519491231002X"


def host(net: int, i: int) -> str:
    return f"10.{net}.{i // 250}.{i % 250 + 1}"


def frames() -> list[bytes]:
    out: list[bytes] = []
    for i in range(N):  # scans: each source probes two ports of one host and one of them on a second host
        src = host(60, i)
        out += [tcp(src, "10.21.0.1", 40000, 1000 + i, 0x02), tcp(src, "10.21.0.2", 40000, 1000 + i, 0x02)]
        out.append(tcp(src, "10.21.0.1", 40000, 30000 + i, 0x02))
    for i in range(N):  # floods: two SYNs (from two sources) to each of N services
        out += [tcp(host(net, i), "10.22.0.1", 40000, 1000 + i, 0x02) for net in (61, 62)]
    for i in range(N):
        out.append(icmp_echo(host(63, i), PORTAL))  # ICMP peers (and one-host sweeps)
        out.append(udp(host(64, i), "10.20.0.53", 40000, 53, dns_query("x.example.com")))  # DNS clients
        out.append(arp_reply(host(65, i), bytes([2, 0, 0, 0, i >> 8, i & 255]), PORTAL, bytes(6)))  # claimed addresses
        out.append(tcp(host(66, i), PORTAL, 40000, 22, 0x02))  # login attempts
        out.append(tcp(PORTAL, "10.67.0.1", 1000 + i, 40000, 0x12))  # the portal answering on N ports
        ftp = host(68, i)
        out += [tcp(ftp, PORTAL, 40000, 21, 0x18, b"USER u\r\n"), tcp(ftp, PORTAL, 40000, 21, 0x18, b"PASS p\r\n")]
        out.append(tcp(PORTAL, host(69, i), 8080, 40000, 0x18, b"<td>" + VALID_ID + b"</td>"))  # personal data
        out.append(tcp(host(70, i), LISTED, 40000, 443, 0x02))  # contacts with a listed address
    return out


@pytest.fixture(scope="module")
def observations(tmp_path_factory: pytest.TempPathFactory) -> list[Observation]:
    work = tmp_path_factory.mktemp("unreported")
    (work / "registry.yaml").write_text(REGISTRY)
    (work / "intel").mkdir()
    (work / "intel" / "feed.txt").write_text(f"{LISTED}\n")
    path = work / "every_kind.pcap"
    with PcapWriter(path) as writer:
        for n, frame in enumerate(frames()):
            writer.write(1_763_900_000 + n / 10_000, frame)
    return analyze_file(path, load_registry(work / "registry.yaml"), load_intel([work / "intel"])).observations


#: kind -> how many of it the capture holds, where that is exact (the scans' lists depend on the sources
#: the scan detector admits, so for them only "more than the cap" is checked)
EXACT = {
    "traffic.icmp_flood": N,
    "traffic.dns_tunnel": N,
    "traffic.arp_spoof": N,
    "traffic.bruteforce": N,
    "traffic.undeclared_service": N,
    "traffic.cleartext_credentials": N,
    "traffic.personal_data": N,
    "traffic.threat_intel": N,
    "traffic.syn_flood": N + 2,  # and the login and listed services, which got N SYNs each
}


def lists(observations: list[Observation]) -> dict[tuple[str, str], list[Observation]]:
    out: defaultdict[tuple[str, str], list[Observation]] = defaultdict(list)
    for o in observations:
        part = str(o.data.get("scan.direction", "")) + ("/udp" if o.target.endswith("/udp") else "")
        out[o.kind, part].append(o)
    return out


def test_every_kind_keeps_the_cap_and_says_how_many_it_left_out(observations: list[Observation]) -> None:
    by_list = lists(observations)
    for kind, total in EXACT.items():
        (kept,) = [obs for (k, _), obs in by_list.items() if k == kind]
        assert len(kept) == MAX_PER_KIND, kind
        assert {o.data[UNREPORTED] for o in kept} == {total - MAX_PER_KIND}, kind
    for part in ("vertical", "horizontal", ""):
        kept = by_list["traffic.portscan" if part else "traffic.host_sweep", part]
        assert len(kept) == MAX_PER_KIND, part
        (left_out,) = {o.data[UNREPORTED] for o in kept}
        assert left_out >= EXTRA, part


def test_what_is_left_out_is_the_least(observations: list[Observation]) -> None:
    """The cap keeps the largest: no flood left out had more SYNs than one kept (all have 2 but two)."""
    floods = [o for o in observations if o.kind == "traffic.syn_flood"]
    assert {f.target for f in floods} >= {f"{PORTAL}:22/tcp", f"{LISTED}:443/tcp"}
    assert sorted(o.data["syn.count"] for o in floods)[-2:] == [N, N]
