"""Port scans (vertical: many ports of one host; horizontal: one port on many hosts) and host sweeps,
over TCP probes (SYN, FIN, NULL, XMAS) and UDP probes.

A UDP probe is the first packet of a UDP flow that answers nothing: not the reverse of a flow seen
before, and not sent from a service port (< 1024) to an ephemeral one, which is how DNS, NTP or
QUIC replies look when their request was not captured. ICMP port-unreachable messages quote the
probe they answer; per scanner and host they count the closed ports that were probed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sentinel.models import Observation
from sentinel.traffic.decode import ACK, FIN, PSH, RST, SYN, TCP, UDP, URG, Packets
from sentinel.traffic.detectors.base import MAX_PER_KIND, UNREPORTED, Context, reports
from sentinel.traffic.detectors.floods import flow_key
from sentinel.traffic.table import DistinctCounter, HashFilter, mix64

I64 = npt.NDArray[np.int64]
SCAN_TYPES = ("syn", "fin", "null", "xmas", "udp")
PROTOCOLS = {TCP: "tcp", UDP: "udp"}
#: UDP flow keys remembered per generation of the flow filter; past that the older generation is
#: forgotten, which keeps the filter's false "seen" answers below ~6 % per generation.
FLOWS_PER_GENERATION = (1 << HashFilter.BITS) // 16
SKETCH_BITS = 20
#: A source enters the per-source tables once it has sent this many probes within the sketch's
#: memory (halved every DECAY_S seconds). Spoofed floods, one probe per random source, thus cost
#: only numpy work; anything that probes twice in about a minute is tracked exactly.
ADMIT = 2
#: UDP sources need more: every client opens UDP flows (DNS, QUIC), one or two each; a scan opens hundreds.
ADMIT_UDP = 8
DECAY_S = 30.0


class FlowMemory:
    """Which directed UDP flows were seen: a one-hash filter whose cells hold the generation that last
    set them, so forgetting the older of two generations costs nothing and a lookup is one gather."""

    BITS = HashFilter.BITS

    def __init__(self) -> None:
        self.cells = np.zeros(1 << self.BITS, np.uint8)
        self.generation = 1  # 0: never set
        self.added = 0

    def _index(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.intp]:
        return (keys >> np.uint64(64 - self.BITS)).astype(np.intp)

    def seen(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        cells = self.cells[self._index(keys)]
        found: npt.NDArray[np.bool_] = (cells != 0) & (cells >= self.generation - 1)  # this generation or the last
        return found

    def add(self, keys: npt.NDArray[np.uint64]) -> None:
        if self.added + keys.size > FLOWS_PER_GENERATION:
            self.generation, self.added = self.generation + 1, 0
            if self.generation == 256:  # the counter wraps: start over rather than confuse old cells
                self.cells[:] = 0
                self.generation = 1
        self.cells[self._index(keys)] = self.generation
        self.added += keys.size


def udp_probes(p: Packets, memory: FlowMemory) -> tuple[I64, I64]:
    """Indices of the UDP packets that are probes (see the module's docstring), and of the first
    packet of each flow that answers an earlier one (the prober got a UDP reply)."""
    idx = np.flatnonzero(p.udp)
    if not idx.size:
        return idx, idx
    src, dst, sport, dport = p.src[idx], p.dst[idx], p.sport[idx], p.dport[idx]
    fwd, rev = flow_key(src, dst, sport, dport), flow_key(dst, src, dport, sport)
    flows, first = np.unique(fwd, return_index=True)
    opens = np.zeros(idx.size, bool)
    opens[first] = True  # the flow's first packet in this batch...
    opens &= ~memory.seen(fwd)  # ...and in the capture so far
    at = np.minimum(np.searchsorted(flows, rev), flows.size - 1)
    answered = ((flows[at] == rev) & (first[at] < np.arange(idx.size))) | memory.seen(rev)
    memory.add(flows)
    service_reply = (sport < 1024) & (dport >= 1024)
    return idx[opens & ~answered & ~service_reply], idx[opens & answered]


def port_unreachable(p: Packets) -> tuple[I64, I64]:
    """ICMP / ICMPv6 port-unreachable messages: their indices and the UDP port each one quotes."""
    code_at = p.pstart - 7  # ICMP code byte; the body (the quoted packet) starts 8 bytes into ICMP
    idx = np.flatnonzero(p.icmp & ((p.icmp_type == 3) | (p.icmp_type == 1)) & (code_at < p.end))
    if not idx.size:
        return idx, idx
    arr = np.frombuffer(p.buf, np.uint8)
    q, end = p.pstart[idx], p.end[idx]
    last = arr.size - 1
    code = arr[np.minimum(code_at[idx], last)].astype(np.int64)
    version = arr[np.minimum(q, last)].astype(np.int64) >> 4
    v4 = (p.icmp_type[idx] == 3) & (code == 3) & (version == 4)
    v6 = (p.icmp_type[idx] == 1) & (code == 4) & (version == 6)
    header = np.where(v4, (arr[np.minimum(q, last)].astype(np.int64) & 15) * 4, 40)
    proto = arr[np.minimum(np.where(v4, q + 9, q + 6), last)].astype(np.int64)
    port_at = q + header + 2
    ok = (v4 | v6) & (proto == UDP) & (header >= 20) & (port_at + 2 <= end)
    ports = arr[np.minimum(port_at, last)].astype(np.int64) << 8 | arr[np.minimum(port_at + 1, last)]
    return idx[ok], ports[ok]


class ScanDetector:
    fields = reports(
        {
            "traffic.portscan": {"source_ip", "destination_ip", "destination_port", "scan.direction", "scan.protocol"}
            | {"scan.ports", "scan.hosts", "scan.probes", "scan.types", "scan.duration_s", "scan.ports_sample"}
            | {"scan.unreachable", "scan.unanswered"},
            "traffic.host_sweep": {"source_ip", "destination_ip", "sweep.hosts", "sweep.probes", "sweep.methods"}
            | {"sweep.duration_s", "sweep.unanswered"},
        }
    )

    def __init__(self, registered: np.ndarray) -> None:
        self.vertical = DistinctCounter(sample=20)  # (src, dst, protocol) → distinct destination ports
        # (src, port, protocol) → distinct destination hosts, and src → distinct hosts; a registered
        # host among them is what the observation is attributed to
        self.horizontal = DistinctCounter(marked_values=registered)
        self.sweeps = DistinctCounter(marked_values=registered)
        self.udp_flows = FlowMemory()
        self.unreachable = DistinctCounter(sample=0)  # (scanner, host) → distinct closed UDP ports
        # what UDP probers got answers from: (prober, host) → ports, (prober, port) → hosts, prober → hosts;
        # probes that are answered are service use (DNS lookups, a resolver's recursion), not a scan
        self.answered_ports = DistinctCounter(sample=0)
        self.answered_hosts = DistinctCounter(sample=0)
        self.answered_any = DistinctCounter(sample=0)
        self.udp_sweeps = DistinctCounter(marked_values=registered)
        self._sketch = np.zeros(1 << SKETCH_BITS, np.int32)  # halved every DECAY_S: 4 bytes a bucket are plenty
        self._decayed_at = -1.0

    def _admitted(self, src: np.ndarray, ts: np.ndarray, udp: np.ndarray | None = None) -> np.ndarray:
        now = float(ts.max())
        if now - self._decayed_at > DECAY_S:
            self._sketch >>= 1
            self._decayed_at = now
        bucket = (mix64(src) >> np.uint64(64 - SKETCH_BITS)).astype(np.int64)
        # touches only this batch's buckets, not all 2**20; the increment in the sketch's own dtype, because
        # with a Python int numpy takes a casting path of ufunc.at that is 60 times slower (11 ms a batch)
        np.add.at(self._sketch, bucket, np.int32(1))
        return self._sketch[bucket] >= (ADMIT if udp is None else np.where(udp, ADMIT_UDP, ADMIT))

    def feed(self, p: Packets) -> None:
        f = p.flags
        no_syn_ack_rst = (f & (SYN | ACK | RST)) == 0
        probes = {
            "syn": p.tcp & ((f & (SYN | ACK | RST)) == SYN),
            "fin": p.tcp & (f == FIN),
            "null": p.tcp & (f == 0),
            "xmas": p.tcp & ((f & (FIN | PSH | URG)) == (FIN | PSH | URG)) & no_syn_ack_rst,
        }
        udp, replies = udp_probes(p, self.udp_flows)
        if replies.size:  # a reply goes from (host, port) back to the prober
            prober, host, port, ts = p.dst[replies], p.src[replies], p.sport[replies], p.ts[replies]
            self.answered_ports.add([prober, host], port, ts)
            self.answered_hosts.add([prober, port], host, ts)
            self.answered_any.add([prober], host, ts)
        if udp.size:
            probes["udp"] = np.zeros(len(p), bool)
            probes["udp"][udp] = True
        any_probe = probes["syn"] | probes["fin"] | probes["null"] | probes["xmas"]
        if udp.size:
            any_probe |= probes["udp"]
        if not any_probe.any():
            probes = {}
        else:
            admitted = np.zeros(len(p), bool)
            idx = np.flatnonzero(any_probe)
            admitted[idx] = self._admitted(p.src[idx], p.ts[idx], probes["udp"][idx] if udp.size else None)
        for kind, mask in probes.items():
            if (mask & admitted).any():
                idx = np.flatnonzero(mask & admitted)
                src, dst, port, ts = p.src[idx], p.dst[idx], p.dport[idx], p.ts[idx]
                proto = np.full(idx.size, UDP if kind == "udp" else TCP, np.int64)
                self.vertical.add([src, dst, proto], port, ts, kind)
                self.horizontal.add([src, port, proto], dst, ts)
                if kind == "udp":
                    self.udp_sweeps.add([src], dst, ts, "udp")
                else:
                    self.sweeps.add([src], dst, ts, "tcp")
        closed, ports = port_unreachable(p)
        if closed.size:  # the host (ICMP source) tells the scanner (ICMP destination) the port is closed
            self.unreachable.add([p.dst[closed], p.src[closed]], ports, p.ts[closed])
        echo = np.flatnonzero(p.icmp & ((p.icmp_type == 8) | (p.icmp_type == 128)))
        if echo.size:
            self.sweeps.add([p.src[echo]], p.dst[echo], p.ts[echo], "icmp")
        who_has = p.arp_op == 1
        if who_has.any():
            self.sweeps.add([p.arp_sip[who_has]], p.arp_tip[who_has], p.ts[p.arp[who_has]], "arp")

    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        out: list[Observation] = []
        closed = {e.key: e.distinct for e in self.unreachable.top(MAX_PER_KIND)}
        # UDP probes that got an answer are subtracted: what is left is what a scan looks like
        ports_ok = {e.key: e.distinct for e in self.answered_ports.top(MAX_PER_KIND)}
        hosts_ok = {e.key: e.distinct for e in self.answered_hosts.top(MAX_PER_KIND)}
        any_ok = {e.key: e.distinct for e in self.answered_any.top(MAX_PER_KIND)}
        # each list keeps its MAX_PER_KIND largest: what it leaves out is known before any is formatted
        left_out = max(self.vertical.counted() - MAX_PER_KIND, 0)
        for e in self.vertical.top(MAX_PER_KIND):
            s, d, proto = e.key
            src, dst, name = book.text(s), book.text(d), PROTOCOLS[proto]
            data = {
                "source_ip": src,
                "destination_ip": dst,
                "scan.direction": "vertical",
                "scan.protocol": name,
                "scan.ports": e.distinct,
                "scan.probes": e.events,
                "scan.types": [t for t in SCAN_TYPES if t in e.tags],
                "scan.duration_s": round(e.last - e.first, 3),
                "scan.ports_sample": sorted(e.sample),
                UNREPORTED: left_out,
            }
            if proto == UDP:  # closed ports the host reported back (ICMP rate limits make it a lower bound)
                data["scan.unreachable"] = closed.get((s, d), 0)
                data["scan.unanswered"] = max(e.distinct - ports_ok.get((s, d), 0), 0)
            target = f"{src} -> {dst}" if proto == TCP else f"{src} -> {dst}/udp"
            out.append(ctx.observation("traffic.portscan", book.attribute(d, s), target, data))
        left_out = max(self.horizontal.counted(2) - MAX_PER_KIND, 0)
        for e in self.horizontal.top(MAX_PER_KIND):
            if e.distinct < 2:  # one host on one port is a connection, not a horizontal scan
                break
            s, port, proto = e.key
            src, name = book.text(s), PROTOCOLS[proto]
            victim = e.marked if e.marked is not None else s
            data = {
                "source_ip": src,
                "destination_ip": ctx.ips(e.sample),
                "destination_port": port,
                "scan.direction": "horizontal",
                "scan.protocol": name,
                "scan.hosts": e.distinct,
                "scan.probes": e.events,
                "scan.duration_s": round(e.last - e.first, 3),
                UNREPORTED: left_out,
            }
            if proto == UDP:
                data["scan.unanswered"] = max(e.distinct - hosts_ok.get((s, port), 0), 0)
            target = f"{src} -> *:{port}/{name}"
            out.append(ctx.observation("traffic.portscan", book.attribute(victim, s), target, data))
        for udp, counter in ((False, self.sweeps), (True, self.udp_sweeps)):
            left_out = max(counter.counted() - MAX_PER_KIND, 0)
            for e in counter.top(MAX_PER_KIND):
                (s,) = e.key
                src = book.text(s)
                victim = e.marked if e.marked is not None else s
                data = {
                    "source_ip": src,
                    "destination_ip": ctx.ips(e.sample),
                    "sweep.hosts": e.distinct,
                    "sweep.probes": e.events,
                    "sweep.methods": sorted(e.tags),
                    "sweep.duration_s": round(e.last - e.first, 3),
                    UNREPORTED: left_out,
                }
                if udp:  # kept apart: hosts that answer UDP (a resolver's upstreams) are not swept
                    data["sweep.unanswered"] = max(e.distinct - any_ok.get((s,), 0), 0)
                target = f"{src} -> */udp" if udp else f"{src} -> *"
                out.append(ctx.observation("traffic.host_sweep", book.attribute(victim, s), target, data))
        return out
