"""Each capture of a batch is analysed in forked children with a time and an address-space limit.

A file that is hostile (decompression bomb, pathological layout) or simply too big therefore
costs at most its limits; the parent reports it by name and goes on with the rest of the batch.

When a second CPU is idle a capture gets two children, each running one part of the detectors
(analyze.PARTS) over the whole file; their observations are merged in detector order, so the
outcome is the same as one child's. Each child has the limits.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sentinel.models import Observation
from sentinel.registry.models import Registry
from sentinel.traffic.analyze import PARTS, analyze_file
from sentinel.traffic.capture import CaptureError
from sentinel.traffic.idle import CpuSample, idle_cpus
from sentinel.traffic.intel import ThreatIntel

PAGE = resource.getpagesize()


@dataclass
class FileOutcome:
    path: Path
    observations: list[Observation] = field(default_factory=list)
    packets: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    #: the child's peak resident memory (the largest child's, for a capture split between two)
    peak_rss_mb: float = 0.0
    #: from a child: its detectors' observations by detector index, for the parent to merge
    sections: list[tuple[int, list[Observation]]] = field(default_factory=list)


def default_parts(since: CpuSample | None = None) -> int:
    """Two children per capture when a second CPU is idle (since `since`, see idle.py), else one. Two
    children read and decode the file twice (~20 % more CPU time), which only pays when they really run
    side by side: on a busy machine the one child is faster."""
    return len(PARTS) if idle_cpus(since) > 0.5 else 1  # on 2 CPUs: 1.45x at load 0.9, 0.8x at load 2.6


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * PAGE


def _child(
    conn: Connection, path: Path, registry: Registry, intel: ThreatIntel, memory_mb: int, part: int | None
) -> None:
    try:
        limit = _address_space() + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result = analyze_file(path, registry, intel, part)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
        # the observations travel once, in their sections, as plain tuples (unpickling thousands of frozen
        # dataclasses field by field cost the parent a quarter of a second)
        sections = [(index, _pack(section)) for index, section in result.sections]
        conn.send(FileOutcome(path, [], result.packets, result.warnings, peak_rss_mb=peak, sections=sections))
    except CaptureError as exc:
        conn.send(FileOutcome(path, error=str(exc)))
    except MemoryError:
        conn.send(FileOutcome(path, error=f"exceeded the memory limit of {memory_mb} MB"))
    except Exception as exc:  # a bug must not take down the batch; keep the cause for the report
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        conn.send(FileOutcome(path, error=f"internal error while analysing: {detail}"))
    finally:
        conn.close()


def _pack(observations: list[Observation]) -> list[Any]:
    """Observations as tuples where they carry nothing but kind, ids, time, probe and data (the detectors')."""
    plain = Observation("", "", "", datetime.min, "")
    return [
        (o.kind, o.system_id, o.target, o.observed_at, o.probe, o.data)
        if (o.status, o.error, o.site, o.vantage) == (plain.status, plain.error, plain.site, plain.vantage)
        else o
        for o in observations
    ]


def _unpack(packed: list[Any]) -> list[Observation]:
    return [Observation(p[0], p[1], p[2], p[3], p[4], data=p[5]) if isinstance(p, tuple) else p for p in packed]


class _Child:
    """One forked child analysing a capture (or a part of its detectors), from `__init__` until `outcome()`."""

    def __init__(
        self, path: Path, registry: Registry, intel: ThreatIntel, time_limit: float, memory_mb: int, part: int | None
    ) -> None:
        self.path, self.time_limit = path, time_limit
        ctx = multiprocessing.get_context("fork")
        self.parent, child = ctx.Pipe(duplex=False)
        args = (child, path, registry, intel, memory_mb, part)
        self.proc = ctx.Process(target=_child, args=args, daemon=True)
        self.started = time.monotonic()
        self.proc.start()
        child.close()

    def outcome(self) -> FileOutcome:
        path, time_limit, proc = self.path, self.time_limit, self.proc
        too_slow = FileOutcome(path, error=f"took longer than the time limit of {time_limit:g} s; stopped")
        try:
            # the limit runs from the child's start, however long the caller took to ask
            if self.parent.poll(max(time_limit - (time.monotonic() - self.started), 0)):
                try:
                    outcome: FileOutcome = self.parent.recv()
                    outcome.sections = [(index, _unpack(packed)) for index, packed in outcome.sections]
                except (EOFError, OSError):
                    outcome = FileOutcome(path, error=f"analysis died (exit code {proc.exitcode}); memory limit?")
                # The parent may be scheduled late on a busy machine: the limit is the child's wall time.
                if outcome.error is None and time.monotonic() - self.started > time_limit:
                    outcome = too_slow
            else:
                outcome = too_slow
        finally:
            self.stop()
        return outcome

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.parent.close()  # closing twice is harmless


class _Isolated:
    """One capture being analysed by its children (one per part, or one for all detectors)."""

    def __init__(
        self, path: Path, registry: Registry, intel: ThreatIntel, time_limit: float, memory_mb: int, parts: int
    ) -> None:
        self.path = path
        which: list[int | None] = [None] if parts <= 1 else list(range(len(PARTS)))
        self.children = [_Child(path, registry, intel, time_limit, memory_mb, part) for part in which]

    def outcome(self) -> FileOutcome:
        outcomes: list[FileOutcome] = []
        for child in self.children:
            outcome = child.outcome()
            if outcome.error is not None:  # the file failed: the other part is not wanted
                self.stop()
                return outcome
            outcomes.append(outcome)
        first = outcomes[0]  # both parts read the same records (and the same truncation)
        sections = sorted((s for o in outcomes for s in o.sections), key=lambda s: s[0])
        observations = [obs for _, section in sections for obs in section]
        peak = max(o.peak_rss_mb for o in outcomes)
        return FileOutcome(self.path, observations, first.packets, first.warnings, peak_rss_mb=peak)

    def stop(self) -> None:
        for child in self.children:
            child.stop()


def analyze_isolated(
    path: Path, registry: Registry, intel: ThreatIntel, time_limit: float, memory_mb: int, parts: int | None = None
) -> FileOutcome:
    """`parts`: children for the capture (default: two when there are two CPUs, see default_parts)."""
    children = default_parts() if parts is None else parts
    return _Isolated(path, registry, intel, time_limit, memory_mb, children).outcome()


class BatchRun:
    """Outcomes of the files in order. The first file's child starts at once, before the first outcome is
    asked for, so the caller's own preparation (loading rules, opening the store) runs beside it on
    another core; each later child starts when the previous outcome is taken (one child at a time,
    so the memory limit bounds the whole batch). `close()` stops a child whose outcome is not wanted."""

    def __init__(
        self, paths: list[Path], registry: Registry, intel: ThreatIntel, time_limit: float, memory_mb: int, parts: int
    ) -> None:
        self._paths, self._registry, self._intel = paths, registry, intel
        self._time_limit, self._memory_mb, self._parts = time_limit, memory_mb, parts
        self._running: _Isolated | FileOutcome | None = self._start(paths[0]) if paths else None

    def _start(self, path: Path) -> _Isolated | FileOutcome:
        if not path.is_file():
            return FileOutcome(path, error="no such file")
        return _Isolated(path, self._registry, self._intel, self._time_limit, self._memory_mb, self._parts)

    def __iter__(self) -> Iterator[FileOutcome]:
        for n in range(len(self._paths)):
            running = self._running if n == 0 else self._start(self._paths[n])
            self._running = running
            if running is None:
                return
            yield running.outcome() if isinstance(running, _Isolated) else running
            self._running = None

    def close(self) -> None:
        if isinstance(self._running, _Isolated):
            self._running.stop()
        self._running = None


def analyze_batch(
    paths: list[Path],
    registry: Registry,
    intel: ThreatIntel,
    time_limit: float = 600,
    memory_mb: int = 1024,
    parts: int | None = None,
    idle_since: CpuSample | None = None,
) -> BatchRun:
    """`parts`: children per capture; by default two when a second CPU was idle since `idle_since`."""
    chosen = default_parts(idle_since) if parts is None else parts
    return BatchRun(paths, registry, intel, time_limit, memory_mb, chosen)
