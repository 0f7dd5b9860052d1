"""Run every detector over a capture and hand the measured values to the rule engine as observations.

Attribution: an observation belongs to the registered system whose endpoint address it concerns (the
victim of a scan or flood, the server receiving credentials, the client sending DNS queries...).
When no address of it is registered, it belongs to the reserved system id `unregistered`; callers
that turn observations into findings evaluate against `with_unregistered(registry)`, which adds a
pseudo-system with that id so detections about unregistered hosts are reported as such.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sentinel.errors import InputError, Problem
from sentinel.models import Observation
from sentinel.registry.models import Endpoint, Owner, Registry, System, Tier
from sentinel.traffic.addresses import UNREGISTERED, AddressBook
from sentinel.traffic.capture import CaptureError, CaptureReader, RecordBatch
from sentinel.traffic.decode import decode
from sentinel.traffic.detectors.arp import ArpDetector
from sentinel.traffic.detectors.base import Context, Detector
from sentinel.traffic.detectors.dns import DnsDetector
from sentinel.traffic.detectors.floods import IcmpDetector, SynFloodDetector
from sentinel.traffic.detectors.intel import IntelDetector
from sentinel.traffic.detectors.payload import PayloadDetector
from sentinel.traffic.detectors.scans import ScanDetector
from sentinel.traffic.detectors.services import BruteForceDetector, UndeclaredServiceDetector
from sentinel.traffic.intel import ThreatIntel, load_intel, shipped_intel_dir

#: The detectors (by index in the full list below) in two parts that share no state: the payload
#: detector hands login failures and HTTP Host names to the brute-force and intel detectors, DNS hands
#: names to intel, the others stand alone. A capture can thus be analysed by two processes at once,
#: one part each, with the same results. The parts cost about the same, both on web traffic (scans and
#: SYN floods against payloads, DNS and the rest: about 1.0 s each on 2 M packets) and on hostile traffic
#: (random sources and ports against random DNS names: about 1.3 s each); see bench/pcap_analyze.py.
PARTS: tuple[tuple[int, ...], ...] = ((0, 1), (2, 3, 4, 5, 6, 7, 8))


class Analyzer:
    """Feed record batches in, read observations out; memory is bounded by the detectors' tables.

    `part`: run only the detectors of PARTS[part] (None: all of them)."""

    def __init__(
        self, registry: Registry, intel: ThreatIntel, probe: str = "pcap", source: str = "", part: int | None = None
    ) -> None:
        self.book = AddressBook(registry)
        self.probe, self.source = probe, source
        brute = BruteForceDetector()
        intel_detector = IntelDetector(intel, self.book)
        on_name = intel_detector.on_name if intel.domains else None
        on_names = intel_detector.on_names if intel.domains else None
        every: list[Detector] = [
            ScanDetector(self.book.registered),
            SynFloodDetector(),
            IcmpDetector(),
            UndeclaredServiceDetector(self.book.registered),
            brute,
            PayloadDetector(self.book.registered, brute, on_name, list(intel.domains)),
            DnsDetector(on_names, list(intel.domains)),
            ArpDetector(),
            intel_detector,
        ]
        self.indices = list(range(len(every))) if part is None else list(PARTS[part])
        self.detectors = [every[i] for i in self.indices]
        self.packets = 0
        self.last_ts = 0.0

    def feed(self, batch: RecordBatch) -> None:
        if not len(batch):
            return
        packets = decode(batch, self.book)
        for detector in self.detectors:
            detector.feed(packets)
        self.packets += len(batch)
        self.last_ts = max(self.last_ts, float(batch.ts.max()))

    def observations(self, dropped: int | None = None) -> list[Observation]:
        """`dropped`: packets the live capture lost meanwhile, stamped on every observation."""
        return [obs for _, section in self.sections(dropped) for obs in section]

    def sections(self, dropped: int | None = None) -> list[tuple[int, list[Observation]]]:
        """Each detector's observations with its index in the full list (to merge the parts in order)."""
        ctx = Context(self.book, self.probe, self.source, self.last_ts, dropped)
        return [(i, detector.observations(ctx)) for i, detector in zip(self.indices, self.detectors, strict=True)]


@dataclass
class FileResult:
    path: Path
    observations: list[Observation] = field(default_factory=list)
    packets: int = 0
    warnings: list[str] = field(default_factory=list)
    sections: list[tuple[int, list[Observation]]] = field(default_factory=list)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """The detectors build many long-lived containers but no reference cycles, so the cyclic
    collector's passes over them are pure cost (~15 % of a large capture); memory is still freed by
    reference counting, so it stays bounded."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def analyze_file(path: Path, registry: Registry, intel: ThreatIntel, part: int | None = None) -> FileResult:
    """Analyse one capture (with the detectors of PARTS[part] only, if given); raises CaptureError
    (with the reason) when it cannot be read at all."""
    reader = CaptureReader(path)
    with _cyclic_gc_paused():
        analyzer = Analyzer(registry, intel, "pcap", path.name, part)
        for batch in reader.batches():
            analyzer.feed(batch)
        sections = analyzer.sections()
        observations = [obs for _, section in sections for obs in section]
        result = FileResult(path, observations, analyzer.packets, sections=sections)
        del analyzer  # freed now by reference counting, so the collector never walks its tables
    if reader.truncated:
        result.warnings.append(f"{path}: capture ends in the middle of a record (truncated); analysed what was there")
    return result


def observations_from_pcap(path: Path, registry: Registry) -> list[Observation]:
    """Observations of one capture with the shipped threat-intelligence lists (used by `rules test`)."""
    intel_dir = shipped_intel_dir()
    intel = load_intel([intel_dir]) if intel_dir.is_dir() else ThreatIntel()
    try:
        return analyze_file(path, registry, intel).observations
    except CaptureError as exc:
        raise InputError([Problem(str(path), None, str(exc))]) from None


def with_unregistered(registry: Registry) -> Registry:
    """The registry plus the pseudo-system that observations of unregistered hosts are attributed to."""
    if registry.system(UNREGISTERED) is not None:
        raise InputError(
            [Problem(",".join(registry.sources) or "registry", None, f"system id '{UNREGISTERED}' is reserved")]
        )
    pseudo = System(
        id=UNREGISTERED,
        name="Hosts not in the registry",
        owner=Owner(department="(not registered)"),
        tier=Tier.CITY,
        mlps_level=1,
        endpoints=[Endpoint(host="unregistered.invalid")],
        tags=[UNREGISTERED],
    )
    return Registry(scope=registry.scope, systems=(*registry.systems, pseudo), sources=registry.sources)
