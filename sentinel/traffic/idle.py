"""How many CPUs were idle over a recent interval, from the kernel's CPU time counters (/proc/stat).

`pcap analyze` decides between one child per capture and two (one part of the detectors each) by whether a
second CPU is idle. The one-minute load average answered late: after another job had just ended it still
said "busy" for a minute, and while a job had just begun it said "idle". The command instead takes a
sample when it starts and another when its child would start; the imports between them (a few tenths of
a second) are the interval, so the question costs no waiting. This module imports nothing heavy, so the
first sample is taken before anything else is loaded.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

#: Shorter intervals count too few clock ticks (100 a second per CPU) to say anything.
MIN_INTERVAL_S = 0.05


@dataclass(frozen=True, slots=True)
class CpuSample:
    at: float  # time.monotonic()
    idle: int  # clock ticks spent idle (idle + iowait), all CPUs together
    total: int  # clock ticks of every kind, all CPUs together

    @classmethod
    def now(cls) -> CpuSample | None:
        """The counters now; None where /proc/stat cannot be read (not Linux, a sandbox)."""
        try:
            with open("/proc/stat", "rb") as f:
                fields = f.readline().split()
        except OSError:
            return None
        if len(fields) < 6 or fields[0] != b"cpu":
            return None
        ticks = [int(x) for x in fields[1:]]
        return cls(time.monotonic(), ticks[3] + ticks[4], sum(ticks[:8]))


def idle_cpus(since: CpuSample | None) -> float:
    """CPUs idle since `since` (this process's own work counts as busy); without a usable interval, the
    CPUs this process may use minus the one-minute load average."""
    cpus = len(os.sched_getaffinity(0))
    later = CpuSample.now()
    if since is not None and later is not None and later.at - since.at >= MIN_INTERVAL_S:
        spent = later.total - since.total
        if spent > 0:
            online = os.cpu_count() or cpus
            idle = (later.idle - since.idle) / spent * online
            return min(idle, float(cpus))
    return cpus - os.getloadavg()[0]
