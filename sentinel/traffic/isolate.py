"""Each capture of a batch is analysed in a forked child with a time and an address-space limit.

A file that is hostile (decompression bomb, pathological layout) or simply too big therefore
costs at most its limits; the parent reports it by name and goes on with the rest of the batch.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from sentinel.models import Observation
from sentinel.registry.models import Registry
from sentinel.traffic.analyze import analyze_file
from sentinel.traffic.capture import CaptureError
from sentinel.traffic.intel import ThreatIntel

PAGE = resource.getpagesize()


@dataclass
class FileOutcome:
    path: Path
    observations: list[Observation] = field(default_factory=list)
    packets: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * PAGE


def _child(conn: Connection, path: Path, registry: Registry, intel: ThreatIntel, memory_mb: int) -> None:
    try:
        limit = _address_space() + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result = analyze_file(path, registry, intel)
        conn.send(FileOutcome(path, result.observations, result.packets, result.warnings))
    except CaptureError as exc:
        conn.send(FileOutcome(path, error=str(exc)))
    except MemoryError:
        conn.send(FileOutcome(path, error=f"exceeded the memory limit of {memory_mb} MB"))
    except Exception as exc:  # a bug must not take down the batch; keep the cause for the report
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        conn.send(FileOutcome(path, error=f"internal error while analysing: {detail}"))
    finally:
        conn.close()


def analyze_isolated(
    path: Path, registry: Registry, intel: ThreatIntel, time_limit: float, memory_mb: int
) -> FileOutcome:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, path, registry, intel, memory_mb), daemon=True)
    started = time.monotonic()
    proc.start()
    child.close()
    too_slow = FileOutcome(path, error=f"took longer than the time limit of {time_limit:g} s; stopped")
    try:
        if parent.poll(time_limit):
            try:
                outcome: FileOutcome = parent.recv()
            except (EOFError, OSError):
                outcome = FileOutcome(path, error=f"analysis died (exit code {proc.exitcode}); memory limit?")
            # The parent may be scheduled late on a busy machine: the limit is the child's wall time.
            if outcome.error is None and time.monotonic() - started > time_limit:
                outcome = too_slow
        else:
            outcome = too_slow
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    return outcome


def analyze_batch(
    paths: list[Path], registry: Registry, intel: ThreatIntel, time_limit: float = 600, memory_mb: int = 1024
) -> Iterator[FileOutcome]:
    for path in paths:
        if not path.is_file():
            yield FileOutcome(path, error="no such file")
            continue
        yield analyze_isolated(path, registry, intel, time_limit, memory_mb)
