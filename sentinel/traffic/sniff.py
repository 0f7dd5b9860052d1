"""Live traffic: frames are read from a TPACKET_V3 ring (sentinel.traffic.ring) one retired block at a
time and fed to the same Analyzer as capture files, window after window.

Every window reports its capture health: the packets the kernel's filter accepted, those it dropped
because the ring was full, and those analysed, as a `traffic.capture` observation; and every other
observation of the window carries `capture.dropped` / `capture.lossy`, so a window with loss is never
presented as clean. Memory stays bounded: the ring is fixed, and the detectors' tables are capped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType

import numpy as np

from sentinel.models import Observation
from sentinel.registry.models import Registry
from sentinel.traffic.addresses import UNREGISTERED
from sentinel.traffic.analyze import Analyzer
from sentinel.traffic.capture import RecordBatch
from sentinel.traffic.intel import ThreatIntel
from sentinel.traffic.ring import PacketRing

ETHERNET, RAW_IP, LINUX_SLL = 1, 101, 113
CAPTURE_KIND = "traffic.capture"


@dataclass
class SniffResult:
    observations: list[Observation]
    packets: int  # analysed
    received: int = 0  # accepted by the capture filter (the dropped ones included), as libpcap counts
    dropped: int = 0  # lost by the kernel: the ring was full

    @property
    def lossy(self) -> bool:
        return self.dropped > 0


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


def _head(batch: RecordBatch, n: int) -> RecordBatch:
    return RecordBatch(batch.buf, batch.data[:n], batch.caplen[:n], batch.wirelen[:n], batch.ts[:n], batch.linktype[:n])


def capture_observation(iface: str, bpf: str | None, window_s: float, result: SniffResult) -> Observation:
    """The window's capture health; it concerns the sensor, not a registered system."""
    data = {
        "capture": iface,
        "capture.interface": iface,
        "capture.filter": bpf or "",
        "capture.window_s": round(window_s, 3),
        "capture.received": result.received,
        "capture.dropped": result.dropped,
        "capture.analysed": result.packets,
        "capture.drop_ratio": round(result.dropped / result.received, 6) if result.received else 0.0,
        "capture.lossy": result.lossy,
    }
    return Observation(
        kind=CAPTURE_KIND,
        system_id=UNREGISTERED,
        target=f"capture {iface}",
        observed_at=datetime.now(UTC),
        probe="sniff",
        data=data,
    )


class LiveCapture:
    """A ring that stays open across windows, so packets arriving while a window's findings are
    evaluated wait in the ring for the next window instead of being lost between captures."""

    #: each window's capture health (`capture_observation`); its detections are the detectors' own
    fields = MappingProxyType(
        {
            CAPTURE_KIND: frozenset(
                {"capture", "capture.interface", "capture.filter", "capture.window_s", "capture.received"}
                | {"capture.dropped", "capture.analysed", "capture.drop_ratio", "capture.lossy"}
            )
        }
    )

    def __init__(self, iface: str, bpf: str | None = None, ring_kb: int = 32 * 1024, block_kb: int = 1024) -> None:
        self.iface, self.bpf = iface, bpf
        block_kb = min(block_kb, ring_kb)
        self.ring = PacketRing(iface, bpf, block_size=block_kb * 1024, blocks=max(ring_kb // block_kb, 1))

    def window(
        self,
        duration: float,
        registry: Registry,
        intel: ThreatIntel,
        max_packets: int = 0,
        on_batch: Callable[[], None] | None = None,
    ) -> SniffResult:
        """Analyse what arrives for `duration` seconds (or until `max_packets`); the kernel's counts are
        those since the last window ended."""
        analyzer = Analyzer(registry, intel, "sniff", self.iface)
        started = time.monotonic()
        deadline = started + duration
        while (remaining := deadline - time.monotonic()) > 0:
            for block in self.ring.read(min(remaining, 0.05)):
                room = max_packets - analyzer.packets
                analyzer.feed(_head(block, room) if max_packets and len(block) > room else block)
                if on_batch is not None:  # e.g. a test's slow consumer
                    on_batch()
            if max_packets and analyzer.packets >= max_packets:
                break
        received, dropped = self.ring.stats()
        result = SniffResult(analyzer.observations(dropped), analyzer.packets, received, dropped)
        result.observations.append(capture_observation(self.iface, self.bpf, time.monotonic() - started, result))
        return result

    def close(self) -> None:
        self.ring.close()

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def sniff(
    iface: str,
    bpf: str | None,
    duration: float,
    registry: Registry,
    intel: ThreatIntel,
    max_packets: int = 0,
    ring_kb: int = 32 * 1024,
) -> SniffResult:
    """Capture on `iface` for `duration` seconds (or `max_packets`) and analyse as it goes."""
    with LiveCapture(iface, bpf, ring_kb) as live:
        return live.window(duration, registry, intel, max_packets)
