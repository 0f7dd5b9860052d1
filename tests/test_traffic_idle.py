"""idle.py: whether a second CPU is idle, measured from /proc/stat over an interval that has just passed, so that
`pcap analyze` picks two children on an idle machine and one on a busy one, whatever the load average says."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from sentinel.traffic import idle
from sentinel.traffic.idle import MIN_INTERVAL_S, CpuSample, idle_cpus
from sentinel.traffic.isolate import default_parts

CPUS = len(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(CPUS < 2 and not os.environ.get("CI"), reason="needs two CPUs")


def test_a_sample_reads_the_kernel_counters() -> None:
    first = CpuSample.now()
    assert first is not None, "/proc/stat is readable on Linux"
    time.sleep(0.05)
    later = CpuSample.now()
    assert later is not None and later.total >= first.total and later.idle >= first.idle and later.at > first.at


@needs_two
def test_an_idle_interval_counts_the_idle_cpus_and_a_busy_one_none() -> None:
    start = CpuSample.now()
    time.sleep(0.3)  # this process sleeps too: every CPU is idle
    assert idle_cpus(start) > CPUS - 0.5
    assert default_parts(start) == 2
    spin = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 0.6: pass\n"
    hogs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(CPUS)]
    try:
        time.sleep(0.1)  # the hogs are running
        start = CpuSample.now()
        time.sleep(0.3)
        assert idle_cpus(start) < 0.5
        assert default_parts(start) == 1
    finally:
        for hog in hogs:
            hog.wait()


def test_without_an_interval_the_load_average_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "getloadavg", lambda: (CPUS + 3.0, 0.0, 0.0))
    assert idle_cpus(None) == -3.0
    just_now = CpuSample.now()
    assert just_now is not None and MIN_INTERVAL_S > 0.01
    assert idle_cpus(just_now) == -3.0  # too short an interval to count ticks over
    monkeypatch.setattr(idle.CpuSample, "now", classmethod(lambda cls: None))  # no /proc/stat
    assert idle_cpus(just_now) == -3.0 and default_parts(just_now) == 1
