"""Port scans (vertical: many ports of one host; horizontal: one port on many hosts) and host sweeps."""

from __future__ import annotations

import numpy as np

from sentinel.models import Observation
from sentinel.traffic.decode import ACK, FIN, PSH, RST, SYN, URG, Packets
from sentinel.traffic.detectors.base import MAX_PER_KIND, Context
from sentinel.traffic.table import DistinctCounter, mix64

SCAN_TYPES = ("syn", "fin", "null", "xmas")
SKETCH_BITS = 20
#: A source enters the per-source tables once it has sent this many probes within the sketch's
#: memory (halved every DECAY_S seconds). Spoofed floods, one probe per random source, thus cost
#: only numpy work; anything that probes twice in about a minute is tracked exactly.
ADMIT = 2
DECAY_S = 30.0


class ScanDetector:
    def __init__(self, registered: np.ndarray) -> None:
        self.vertical = DistinctCounter(sample=20)  # (src, dst) → distinct destination ports
        # (src, port) → distinct destination hosts, and src → distinct hosts; a registered host among
        # them is what the observation is attributed to
        self.horizontal = DistinctCounter(marked_values=registered)
        self.sweeps = DistinctCounter(marked_values=registered)
        self._sketch = np.zeros(1 << SKETCH_BITS, np.int64)
        self._decayed_at = -1.0

    def _admitted(self, src: np.ndarray, ts: np.ndarray) -> np.ndarray:
        now = float(ts.max())
        if now - self._decayed_at > DECAY_S:
            self._sketch >>= 1
            self._decayed_at = now
        bucket = (mix64(src) >> np.uint64(64 - SKETCH_BITS)).astype(np.int64)
        np.add.at(self._sketch, bucket, 1)  # touches only this batch's buckets, not all 2**20
        return self._sketch[bucket] >= ADMIT

    def feed(self, p: Packets) -> None:
        f = p.flags
        no_syn_ack_rst = (f & (SYN | ACK | RST)) == 0
        probes = {
            "syn": p.tcp & ((f & (SYN | ACK | RST)) == SYN),
            "fin": p.tcp & (f == FIN),
            "null": p.tcp & (f == 0),
            "xmas": p.tcp & ((f & (FIN | PSH | URG)) == (FIN | PSH | URG)) & no_syn_ack_rst,
        }
        any_probe = probes["syn"] | probes["fin"] | probes["null"] | probes["xmas"]
        if not any_probe.any():
            probes = {}
        else:
            admitted = np.zeros(len(p), bool)
            idx = np.flatnonzero(any_probe)
            admitted[idx] = self._admitted(p.src[idx], p.ts[idx])
        for kind, mask in probes.items():
            if (mask & admitted).any():
                idx = np.flatnonzero(mask & admitted)
                src, dst, port, ts = p.src[idx], p.dst[idx], p.dport[idx], p.ts[idx]
                self.vertical.add([src, dst], port, ts, kind)
                self.horizontal.add([src, port], dst, ts)
                self.sweeps.add([src], dst, ts, "tcp")
        echo = np.flatnonzero(p.icmp & ((p.icmp_type == 8) | (p.icmp_type == 128)))
        if echo.size:
            self.sweeps.add([p.src[echo]], p.dst[echo], p.ts[echo], "icmp")
        who_has = p.arp_op == 1
        if who_has.any():
            self.sweeps.add([p.arp_sip[who_has]], p.arp_tip[who_has], p.ts[p.arp[who_has]], "arp")

    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        out: list[Observation] = []
        for e in self.vertical.top(MAX_PER_KIND):
            s, d = e.key
            src, dst = book.text(s), book.text(d)
            data = {
                "source_ip": src,
                "destination_ip": dst,
                "scan.direction": "vertical",
                "scan.ports": e.distinct,
                "scan.probes": e.events,
                "scan.types": [t for t in SCAN_TYPES if t in e.tags],
                "scan.duration_s": round(e.last - e.first, 3),
                "scan.ports_sample": sorted(e.sample),
            }
            out.append(ctx.observation("traffic.portscan", book.attribute(d, s), f"{src} -> {dst}", data))
        for e in self.horizontal.top(MAX_PER_KIND):
            if e.distinct < 2:  # one host on one port is a connection, not a horizontal scan
                break
            s, port = e.key
            src = book.text(s)
            victim = e.marked if e.marked is not None else s
            data = {
                "source_ip": src,
                "destination_ip": ctx.ips(e.sample),
                "destination_port": port,
                "scan.direction": "horizontal",
                "scan.hosts": e.distinct,
                "scan.probes": e.events,
                "scan.duration_s": round(e.last - e.first, 3),
            }
            out.append(ctx.observation("traffic.portscan", book.attribute(victim, s), f"{src} -> *:{port}/tcp", data))
        for e in self.sweeps.top(MAX_PER_KIND):
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
            }
            out.append(ctx.observation("traffic.host_sweep", book.attribute(victim, s), f"{src} -> *", data))
        return out
