"""Bounds of the passive analyser: what the per-kind cap leaves out is reported, hostile traffic (random
sources, random ports, random short DNS names) cannot grow the tables or the child's memory past their
limits, and a capture split between two children is reported exactly as one child reports it."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.pcap_mixes import generate
from bench.pcapgen import PcapWriter, arp_reply, icmp_echo
from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet
from sentinel.models import Observation
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Registry
from sentinel.registry.scope import Scope
from sentinel.traffic.analyze import Analyzer, analyze_file, with_unregistered
from sentinel.traffic.capture import CaptureReader
from sentinel.traffic.detectors.arp import MAX_MACS
from sentinel.traffic.detectors.base import MAX_PER_KIND, UNREPORTED
from sentinel.traffic.detectors.dns import DnsDetector
from sentinel.traffic.detectors.floods import SourceBudget, SourceCounts, SynFloodDetector
from sentinel.traffic.intel import ThreatIntel, load_intel, shipped_intel_dir
from sentinel.traffic.isolate import analyze_batch, analyze_isolated
from sentinel.traffic.table import U64Index, U64Set

FIXTURES = Path(__file__).resolve().parents[1] / "rules" / "tests" / "traffic"
EMPTY = Registry(scope=Scope(), systems=())
RULES = RuleSet(load_rules([shipped_rules_dir() / "traffic"]))
EXTRA = 100
#: enough for the first half to fill the service and DNS tables (65,536 entries each)
HOSTILE_PACKETS = 600_000


def _rows(observations: list[Observation]) -> list[tuple[str, str, str, dict[str, object]]]:
    return [(o.kind, o.system_id, o.target, dict(o.data)) for o in observations]


def test_each_kept_observation_says_how_many_of_its_list_the_cap_left_out(tmp_path: Path) -> None:
    # one echo request from each of MAX_PER_KIND + EXTRA sources: as many ICMP peers and one-host sweeps
    path = tmp_path / "many_peers.pcap"
    with PcapWriter(path) as writer:
        for n in range(MAX_PER_KIND + EXTRA):
            writer.write(1_763_900_000 + n / 1000, icmp_echo(f"10.40.{n // 250}.{n % 250 + 1}", "10.20.1.1"))
    observations = analyze_file(path, EMPTY, ThreatIntel()).observations
    assert all(UNREPORTED in o.data for o in observations)
    for kind in ("traffic.icmp_flood", "traffic.host_sweep"):
        kept = [o for o in observations if o.kind == kind]
        assert len(kept) == MAX_PER_KIND
        assert {o.data[UNREPORTED] for o in kept} == {EXTRA}


def test_one_address_claimed_by_endless_macs_keeps_the_cap_and_counts_the_rest(tmp_path: Path) -> None:
    # one ARP reply each from MAX_MACS + EXTRA MACs, all claiming one address, then the first MAC again
    path = tmp_path / "mac_flood.pcap"
    claimed = "10.20.1.1"
    with PcapWriter(path) as writer:
        for n in range(MAX_MACS + EXTRA):
            mac = bytes([2, 0, 0, 0, n >> 8, n & 255])
            writer.write(1_763_900_000 + n / 1000, arp_reply(claimed, mac, "10.20.1.9", bytes(6)))
        writer.write(1_763_900_001, arp_reply(claimed, bytes([2, 0, 0, 0, 0, 0]), "10.20.1.9", bytes(6)))
    (spoof,) = [o for o in analyze_file(path, EMPTY, ThreatIntel()).observations if o.kind == "traffic.arp_spoof"]
    assert spoof.data["arp.macs"] == MAX_MACS
    assert spoof.data["arp.unrecorded_packets"] == EXTRA  # the first MAC's second reply is a known one
    assert spoof.data["arp.replies"] == MAX_MACS + EXTRA + 1
    assert spoof.data["arp.first_mac"] == "02:00:00:00:00:00"


def test_nothing_left_out_is_reported_as_zero_and_reaches_the_evidence() -> None:
    observations = analyze_file(FIXTURES / "syn_flood.pcap.gz", EMPTY, ThreatIntel()).observations
    assert observations and {o.data[UNREPORTED] for o in observations} == {0}
    verdicts = RULES.evaluate_stateless(observations, with_unregistered(EMPTY))
    floods = [v for v in verdicts if v.present and v.rule.id == "traffic_syn_flood"]
    assert floods and all(v.evidence[UNREPORTED] == 0 for v in floods)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "hostile.pcap"
    generate(path, HOSTILE_PACKETS, "hostile")
    return path


def test_hostile_traffic_fills_the_tables_but_never_grows_them(hostile: Path) -> None:
    analyzer = Analyzer(EMPTY, load_intel([shipped_intel_dir()]))
    flood = next(d for d in analyzer.detectors if isinstance(d, SynFloodDetector))
    dns = next(d for d in analyzer.detectors if isinstance(d, DnsDetector))
    flood.budget.left = 10_000  # a small budget, so this capture spends it
    sizes = []
    for batch in CaptureReader(hostile).batches():  # each batch is valid only until the next is read
        analyzer.feed(batch)
        if not sizes and analyzer.packets >= HOSTILE_PACKETS // 2:
            sizes.append((len(flood.services), len(dns.domains)))
    sizes.append((len(flood.services), len(dns.domains)))
    # full after the first half (new services and domains are refused, and counted), no larger after the second
    assert sizes[0] == sizes[1] == (flood.services.max_entries, dns.domains.max_entries)
    assert flood.services.overflow > 0 and dns.domains.overflow > 0
    stored = sum(len(svc.sources) for _, svc in flood.services.items())
    assert stored <= 10_000 and flood.budget.left >= 0
    assert sum(svc.sources.unattributed for _, svc in flood.services.items()) > 0
    assert len(dns.domains.domain) == len(dns.domains) <= dns.domains.max_entries  # one name per stored pair
    assert analyzer.observations()  # and it still reports


# From a fresh interpreter, as `sentinel pcap analyze` runs it: a child forked from this long-lived test process
# would count the pages it inherited from earlier tests in its resident set.
HOSTILE_CHILD = """
import sys
from pathlib import Path
from sentinel.registry.models import Registry
from sentinel.registry.scope import Scope
from sentinel.traffic.intel import load_intel, shipped_intel_dir
from sentinel.traffic.isolate import analyze_isolated
empty = Registry(scope=Scope(), systems=())
outcome = analyze_isolated(Path(sys.argv[1]), empty, load_intel([shipped_intel_dir()]), 300, 1024)
print(outcome.error, outcome.packets, outcome.peak_rss_mb)
"""


def test_hostile_traffic_keeps_the_child_under_its_memory_bound(hostile: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", HOSTILE_CHILD, str(hostile)], capture_output=True, text=True, timeout=400, check=True
    ).stdout.split()
    error, packets, peak_rss_mb = out[0], int(out[1]), float(out[2])
    assert error == "None" and packets == HOSTILE_PACKETS
    assert 0 < peak_rss_mb < 512


def test_sources_share_one_budget_across_services() -> None:
    budget = SourceBudget(left=100)
    services = [SourceCounts(budget) for _ in range(3)]
    rng = np.random.default_rng(1)
    services[0].add(rng.integers(1, 1 << 32, 80))  # a flood batch (numpy path)
    for svc in services[1:]:
        for _ in range(5):
            svc.add(rng.integers(1, 1 << 32, 10))  # a few SYNs at a time (dict path)
    assert sum(len(s) for s in services) == 100 and budget.left == 0
    assert sum(s.unattributed for s in services) == 80 + 2 * 50 - 100


@pytest.mark.parametrize(
    "capture", ["portscan_udp.pcap", "syn_flood_with_client.pcap.gz", "dns_tunnel.pcap", "ftp_bruteforce.pcap"]
)
def test_a_capture_split_between_two_children_is_reported_as_by_one(capture: str) -> None:
    intel = load_intel([shipped_intel_dir()])
    one = analyze_isolated(FIXTURES / capture, EMPTY, intel, time_limit=120, memory_mb=1024, parts=1)
    two = analyze_isolated(FIXTURES / capture, EMPTY, intel, time_limit=120, memory_mb=1024, parts=2)
    assert one.error is None and two.error is None
    assert _rows(two.observations) == _rows(one.observations)  # same observations, same order
    assert two.packets == one.packets


def test_a_batch_starts_its_first_child_at_once_and_stops_it_when_closed() -> None:
    # other long-lived children of this process (the collectors' HTML worker pool) are not the batch's
    others = {p.pid for p in multiprocessing.active_children()}
    run = analyze_batch([FIXTURES / "normal.pcap", FIXTURES / "missing.pcap"], EMPTY, ThreatIntel(), parts=1)
    outcomes = list(run)
    assert outcomes[0].error is None and outcomes[0].packets > 0
    assert outcomes[1].error == "no such file"
    unread = analyze_batch([FIXTURES / "syn_flood.pcap.gz"], EMPTY, ThreatIntel(), parts=2)
    unread.close()  # the caller failed before asking: its children are stopped, not left running
    assert {p.pid for p in multiprocessing.active_children()} <= others


def test_the_numpy_hash_tables_answer_as_a_dict_and_a_set_do() -> None:
    rng = np.random.default_rng(3)
    index, keys_seen = U64Index(), U64Set()
    mapping: dict[int, int] = {}
    members: set[int] = set()
    for n in range(200):
        keys = np.unique(rng.integers(0, 2**63, int(rng.integers(1, 3000)), dtype=np.uint64))
        if n == 7:  # 0 is the empty cell of U64Set: it must still be a key like any other
            keys = np.unique(np.append(keys, np.uint64(0)))
        new = keys[index.get(keys) < 0]
        index.insert(new, np.arange(len(mapping), len(mapping) + new.size))
        mapping.update(zip(new.tolist(), range(len(mapping), len(mapping) + new.size), strict=True))
        absent = keys[~keys_seen.contains(keys)]
        keys_seen.add(absent)
        members.update(absent.tolist())
        asked = np.concatenate([keys, rng.integers(0, 2**63, 500, dtype=np.uint64), np.zeros(1, np.uint64)])
        assert index.get(asked).tolist() == [mapping.get(k, -1) for k in asked.tolist()]
        assert keys_seen.contains(asked).tolist() == [k in members for k in asked.tolist()]
    assert len(index) == len(mapping) and len(keys_seen) == len(members)
