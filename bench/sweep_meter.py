"""Per-probe accounting of one sweep, for the scale benchmark: jobs, probes sent, job spans, event-loop share,
bytes received, and the slowest jobs with what they ended in.

Nothing in Sentinel is changed for it beyond `runner.CURRENT_PROBE`, the context variable each job's task sets:
a callback run by the event loop carries the context of the task (or transport) that scheduled it, so

- loop time: `asyncio.events.Handle._run` is wrapped to time every callback and add it to the probe of the
  handle's context (task steps, timers and socket readers alike);
- bytes received: the `recv*` methods of `socket.socket` are wrapped to add what each call returned (TCP payload,
  or whole raw packets for the SYN and ICMP receivers) to the probe of the calling context;
- probes sent: `ScopedNetwork.admit` (connections) and `admit_packet` (raw packets) are wrapped to count per probe
  and per address, which also gives the bound the configured rates imply;
- jobs: `runner.run_job` is wrapped to stamp each job's start and end and the error kinds it reported.

`install()` patches, `Meter.report()` returns a JSON-able summary. Meant for a benchmark process only.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import functools
import importlib
import os
import socket
import sys
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel.collectors import runner
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import CURRENT_PROBE, PlannedJob
from sentinel.models import Observation

UNATTRIBUTED = "(sweep)"
SLOWEST_KEPT = 200


@dataclass
class ProbeStats:
    jobs: int = 0
    connections: int = 0
    packets: int = 0
    loop_ns: int = 0
    callbacks: int = 0
    bytes_received: int = 0
    tcp_connects: int = 0
    first_start: float | None = None
    last_end: float | None = None
    job_seconds: list[float] = field(default_factory=list)
    observations: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class JobRecord:
    probe: str
    system_id: str
    target: str
    start: float  # seconds since the sweep's first job started
    seconds: float
    ended_in: str  # "ok", or the error kinds its observations carry


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def hwm_mb() -> float:
    """The kernel's high-water mark of this process's RSS (what ru_maxrss reports), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Meter:
    def __init__(self) -> None:
        self.probes: defaultdict[str, ProbeStats] = defaultdict(ProbeStats)
        self.per_target_connections: Counter[str] = Counter()
        self.per_target_packets: Counter[str] = Counter()
        self.jobs: list[JobRecord] = []
        self.loop_ns_total = 0
        self.started: float | None = None
        self.ended: float | None = None
        self._undo: list[Callable[[], None]] = []
        self.rss: list[tuple[float, float]] = []  # (perf_counter, MB), sampled by a thread
        self._sampling = threading.Event()
        self.hwm_rises: list[dict[str, Any]] = []  # where the RSS high-water mark rose (see `_sample_rss`)
        self.phases: list[dict[str, Any]] = []  # traced calls: name, start, seconds, RSS before / after / peak

    # -- patches ---------------------------------------------------------------------------------------------
    def install(self) -> Meter:
        threading.Thread(target=self._sample_rss, daemon=True).start()
        self._patch_handles()
        self._patch_sockets()
        self._patch_admission()
        self._patch_jobs()
        return self

    def _sample_rss(self) -> None:
        """RSS every 10 ms, so the report can tell the probing phase's peak from the ingest's and the output's;
        when the high-water mark has risen by 8 MB or more since the last sample, what the main thread was running
        (the sampler waits for the GIL, so it sees the main thread right after the allocating step)."""
        main = threading.main_thread().ident
        last_hwm = hwm_mb()
        while not self._sampling.wait(0.01):
            now, hwm = time.perf_counter(), hwm_mb()
            self.rss.append((now, rss_mb()))
            if hwm - last_hwm >= 8:
                frame = sys._current_frames().get(main or 0)
                where = [f"{f.name} ({Path(f.filename).name}:{f.lineno})" for f in traceback.extract_stack(frame)][-40:]
                self.hwm_rises.append({"at": now, "from_mb": round(last_hwm), "to_mb": round(hwm), "main": where})
            last_hwm = hwm

    def trace(self, *targets: str) -> Meter:
        """Record each call of these functions ("module:attr" or "module:Class.method"): time and RSS."""
        for target in targets:
            module_name, _, path = target.partition(":")
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            if hasattr(owner, name):  # a version of Sentinel without it: nothing to trace
                self._replace(owner, name, self._traced(path, getattr(owner, name)))
        return self

    def _traced(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        meter = self

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            start, before, hwm_before = time.perf_counter(), rss_mb(), hwm_mb()
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.perf_counter()
                peak = max((mb for t, mb in meter.rss if start <= t <= end), default=before)
                meter.phases.append(
                    {
                        "name": label,
                        "start": round(start - (meter.started or start), 3),
                        "seconds": round(end - start, 3),
                        "rss_before_mb": round(before),
                        "rss_after_mb": round(rss_mb()),
                        "rss_peak_mb": round(max(peak, rss_mb())),
                        "hwm_before_mb": round(hwm_before),
                        "hwm_after_mb": round(hwm_mb()),
                    }
                )

        return traced

    def uninstall(self) -> None:
        self._sampling.set()
        while self._undo:
            self._undo.pop()()

    def _replace(self, owner: Any, name: str, value: Any) -> None:
        previous = owner.__dict__.get(name)
        setattr(owner, name, value)
        if previous is None:
            self._undo.append(lambda: delattr(owner, name))
        else:
            self._undo.append(lambda: setattr(owner, name, previous))

    def _patch_handles(self) -> None:
        original = asyncio.events.Handle._run
        probes = self.probes
        clock = time.perf_counter_ns
        meter = self

        def _run(handle: asyncio.events.Handle) -> None:
            start = clock()
            try:
                original(handle)
            finally:
                spent = clock() - start
                meter.loop_ns_total += spent
                context = handle._context  # type: ignore[attr-defined]
                name = (context.get(CURRENT_PROBE) if context is not None else None) or UNATTRIBUTED
                stats = probes[name]
                stats.loop_ns += spent
                stats.callbacks += 1

        self._replace(asyncio.events.Handle, "_run", _run)

    def _patch_sockets(self) -> None:
        probes = self.probes

        def count(n: int) -> None:
            probes[CURRENT_PROBE.get() or UNATTRIBUTED].bytes_received += n

        def wrap_bytes(name: str) -> None:
            original = getattr(socket.socket, name)

            def wrapped(sock: socket.socket, *args: Any, **kwargs: Any) -> Any:
                out = original(sock, *args, **kwargs)
                data = out[0] if isinstance(out, tuple) else out
                if isinstance(data, bytes | bytearray):
                    count(len(data))
                elif isinstance(data, int):
                    count(data)
                return out

            self._replace(socket.socket, name, wrapped)

        for name in ("recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg", "recvmsg_into"):
            wrap_bytes(name)

        def wrap_connect(name: str) -> None:
            original = getattr(socket.socket, name)

            def wrapped(sock: socket.socket, *args: Any) -> Any:
                if sock.type == socket.SOCK_STREAM:
                    probes[CURRENT_PROBE.get() or UNATTRIBUTED].tcp_connects += 1
                return original(sock, *args)

            self._replace(socket.socket, name, wrapped)

        for name in ("connect", "connect_ex"):
            wrap_connect(name)

    def _patch_admission(self) -> None:
        admit, admit_packet = ScopedNetwork.admit, ScopedNetwork.admit_packet
        meter = self

        async def counted_admit(net: ScopedNetwork, address: str) -> None:
            await admit(net, address)
            meter.probes[CURRENT_PROBE.get() or UNATTRIBUTED].connections += 1
            meter.per_target_connections[address] += 1

        async def counted_packet(net: ScopedNetwork, address: str) -> None:
            await admit_packet(net, address)
            meter.probes[CURRENT_PROBE.get() or UNATTRIBUTED].packets += 1
            meter.per_target_packets[address] += 1

        self._replace(ScopedNetwork, "admit", counted_admit)
        self._replace(ScopedNetwork, "admit_packet", counted_packet)

    def _patch_jobs(self) -> None:
        original = runner.run_job
        meter = self

        async def timed(planned: PlannedJob, net: ScopedNetwork, timeout: float) -> list[Observation]:
            start = time.perf_counter()
            if meter.started is None:
                meter.started = start
            found = await original(planned, net, timeout)
            end = time.perf_counter()
            meter.ended = end
            stats = meter.probes[planned.probe.name]
            stats.jobs += 1
            stats.first_start = start if stats.first_start is None else min(stats.first_start, start)
            stats.last_end = end if stats.last_end is None else max(stats.last_end, end)
            stats.job_seconds.append(end - start)
            stats.observations += len(found)
            kinds = sorted({str(o.data.get("error_kind")) for o in found if o.status.value == "error"})
            stats.errors.update(str(o.data.get("error_kind")) for o in found if o.status.value == "error")
            job = planned.job
            at = round(start - meter.started, 3)
            meter.jobs.append(
                JobRecord(planned.probe.name, job.system_id, job.target, at, end - start, ",".join(kinds) or "ok")
            )
            return found

        self._replace(runner, "run_job", timed)

    # -- summary -----------------------------------------------------------------------------------------------
    def report(self) -> dict[str, Any]:
        span = (self.ended or 0.0) - (self.started or 0.0)
        probes: dict[str, Any] = {}
        for name, s in sorted(self.probes.items()):
            seconds = sorted(s.job_seconds)
            probes[name] = {
                "jobs": s.jobs,
                "connections": s.connections,
                "tcp_connects": s.tcp_connects,
                "packets": s.packets,
                "observations": s.observations,
                "span_s": round((s.last_end or 0) - (s.first_start or 0), 3) if s.jobs else None,
                "job_p50_s": round(seconds[len(seconds) // 2], 3) if seconds else None,
                "job_max_s": round(seconds[-1], 3) if seconds else None,
                "loop_s": round(s.loop_ns / 1e9, 3),
                "loop_share": round(s.loop_ns / 1e9 / span, 4) if span > 0 else None,
                "callbacks": s.callbacks,
                "bytes_received": s.bytes_received,
                "errors": dict(s.errors),
            }
        slow = sorted(self.jobs, key=lambda j: j.seconds, reverse=True)[:SLOWEST_KEPT]
        ends = sorted(j.start + j.seconds for j in self.jobs)
        during = [mb for t, mb in self.rss if self.ended is None or t <= self.ended]
        after = [mb for t, mb in self.rss if self.ended is not None and t > self.ended]
        return {
            "hwm_at_report_mb": round(hwm_mb()),
            "rss_peak_probing_mb": round(max(during, default=0.0)),
            "rss_at_probing_end_mb": round(during[-1]) if during else None,
            "rss_peak_after_mb": round(max(after, default=0.0)),
            "phases": self.phases,
            "hwm_rises": [{**r, "at": round(r["at"] - (self.started or r["at"]), 3)} for r in self.hwm_rises],
            "jobs": len(self.jobs),
            "ends_p50_s": round(ends[len(ends) // 2], 3) if ends else None,
            "ends_p99_s": round(ends[int(len(ends) * 0.99)], 3) if ends else None,
            "span_s": round(span, 3),
            "loop_s": round(self.loop_ns_total / 1e9, 3),
            "probes": probes,
            "slowest_jobs": [vars(j) for j in slow],
            "connections": sum(self.per_target_connections.values()),
            "packets": sum(self.per_target_packets.values()),
            "max_target_connections": max(self.per_target_connections.values(), default=0),
            "max_target_packets": max(self.per_target_packets.values(), default=0),
            "targets": len(set(self.per_target_connections) | set(self.per_target_packets)),
        }
