"""Live traffic: scapy captures frames (store=False), which are handed to the same Analyzer in batches.

Memory stays bounded: at most `batch` raw frames wait in a list, and the detectors' tables are capped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sentinel.models import Observation
from sentinel.registry.models import Registry
from sentinel.traffic.analyze import Analyzer
from sentinel.traffic.capture import RecordBatch
from sentinel.traffic.intel import ThreatIntel

ETHERNET, RAW_IP, LINUX_SLL = 1, 101, 113


@dataclass
class SniffResult:
    observations: list[Observation]
    packets: int


def frames_batch(frames: list[tuple[float, int, bytes]]) -> RecordBatch:
    """One RecordBatch from (time, linktype, frame) tuples."""
    lengths = np.array([len(f) for _, _, f in frames], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return RecordBatch(
        b"".join(f for _, _, f in frames),
        starts,
        lengths,
        lengths.copy(),
        np.array([t for t, _, _ in frames], np.float64),
        np.array([lt for _, lt, _ in frames], np.int64),
    )


class LiveAnalyzer:
    def __init__(self, registry: Registry, intel: ThreatIntel, iface: str, batch: int = 4096) -> None:
        self.analyzer = Analyzer(registry, intel, "sniff", iface)
        self.batch = batch
        self._pending: list[tuple[float, int, bytes]] = []

    def add(self, ts: float, linktype: int, frame: bytes) -> None:
        self._pending.append((ts, linktype, frame))
        if len(self._pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.analyzer.feed(frames_batch(self._pending))
            self._pending = []


def sniff(
    iface: str, bpf: str | None, duration: float, registry: Registry, intel: ThreatIntel, max_packets: int = 0
) -> SniffResult:
    """Capture on `iface` for `duration` seconds (or `max_packets`) and analyse as it goes."""
    from scapy.layers.l2 import CookedLinux, Ether
    from scapy.sendrecv import sniff as scapy_sniff

    live = LiveAnalyzer(registry, intel, iface)

    def on_packet(pkt: Any) -> None:
        linktype = ETHERNET if isinstance(pkt, Ether) else LINUX_SLL if isinstance(pkt, CookedLinux) else RAW_IP
        live.add(float(pkt.time), linktype, bytes(pkt))

    scapy_sniff(iface=iface, filter=bpf, prn=on_packet, store=False, timeout=duration, count=max_packets)
    live.flush()
    return SniffResult(live.analyzer.observations(), live.analyzer.packets)
