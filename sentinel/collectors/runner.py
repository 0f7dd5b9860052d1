"""Plan a sweep's jobs and run them with bounded concurrency; every job ends in observations."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sentinel.collectors.base import Probe, ProbeJob
from sentinel.collectors.network import CircuitOpen, OutOfScope, ScopedNetwork
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import Registry

log = logging.getLogger(__name__)

#: the probe whose job the current task runs: tasks a probe spawns inherit it, so per-probe accounting (what it
#: sent and received, how long its callbacks held the loop) needs no plumbing through every call
CURRENT_PROBE: ContextVar[str | None] = ContextVar("sentinel_current_probe", default=None)


@dataclass(frozen=True, slots=True)
class PlannedJob:
    probe: Probe
    job: ProbeJob


@dataclass
class SweepProgress:
    """How far a sweep is, counted as its jobs finish (never estimated): what progress bars, the sweep audit
    record and /metrics read. `findings` counts problems the stateless rules saw in finished jobs so far."""

    total: int
    done: int = 0
    observations: int = 0
    errors: int = 0
    findings: int = 0
    started: float = field(default_factory=time.monotonic)

    def eta_seconds(self, now: float | None = None) -> float | None:
        elapsed = (time.monotonic() if now is None else now) - self.started
        if not self.done or self.done >= self.total:
            return None
        return elapsed / self.done * (self.total - self.done)


#: called after each finished job with the job and the observations it produced
JobDone = Callable[[PlannedJob, list[Observation]], None]


def plan_sweep(
    registry: Registry,
    probes: Sequence[Probe],
    shuffle_seed: int | None = None,
    on_system: Callable[[int], None] | None = None,
) -> list[PlannedJob]:
    """All jobs of one sweep, in a shuffled order so no target sees a burst of consecutive probes, phase by phase
    (raw-packet probes first, see `Probe.phase`). `on_system(jobs)` is called as each system is planned (the dry
    run of a large estate shows progress)."""
    planned: list[PlannedJob] = []
    for system in registry.systems:
        before = len(planned)
        planned.extend(PlannedJob(p, job) for p in probes for job in p.plan(system))
        if on_system is not None:
            on_system(len(planned) - before)
    random.Random(shuffle_seed).shuffle(planned)
    planned.sort(key=lambda p: p.probe.phase)  # stable: still shuffled within a phase
    return planned


def _failed(planned: PlannedJob, error_kind: str, reason: str) -> Observation:
    job = planned.job
    data: dict[str, object] = {"host": job.host, "error_kind": error_kind}
    if error_kind == "dns":
        data["reachable"] = False
    return Observation(
        kind=planned.probe.kind,
        system_id=job.system_id,
        target=job.target,
        observed_at=datetime.now(UTC),
        probe=planned.probe.name,
        status=ObservationStatus.ERROR,
        error=reason,
        data=data,
    )


async def run_job(planned: PlannedJob, net: ScopedNetwork, timeout: float) -> list[Observation]:
    CURRENT_PROBE.set(planned.probe.name)  # this task's own context: the job's child tasks copy it
    try:
        return await asyncio.wait_for(planned.probe.run(planned.job, net), timeout)
    except OutOfScope as exc:
        return [_failed(planned, "out_of_scope", f"not probed: {exc}")]
    except CircuitOpen as exc:
        return [_failed(planned, "circuit_open", f"not probed: {exc}")]
    except TimeoutError:
        return [_failed(planned, "timeout", f"job did not finish within {timeout:g} s")]
    except OSError as exc:
        return [_failed(planned, "dns" if "resolve" in str(exc) else "network", str(exc)[:300])]
    except Exception as exc:  # a bug in a probe must not stop the sweep, nor read as "fine"
        log.exception("probe %s failed on %s", planned.probe.name, planned.job.target)
        return [_failed(planned, "internal", f"probe error ({type(exc).__name__}): {exc}"[:300])]


async def run_sweep_jobs(
    planned: Iterable[PlannedJob],
    net: ScopedNetwork,
    max_jobs: int,
    job_timeout: float,
    on_done: JobDone | None = None,
) -> list[Observation]:
    """Run the jobs, at most `max_jobs` of each phase at a time: raw-packet jobs (phase 0: SYNs and echoes, no
    connection, no socket of their own) do not take the conversations' slots, so both the packet and the
    connection budgets are used from the first second, and the port scan ends early."""
    slots: dict[int, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(max_jobs))

    async def bounded(p: PlannedJob) -> list[Observation]:
        async with slots[p.probe.phase]:
            found = await run_job(p, net, job_timeout)
        if on_done is not None:
            try:
                on_done(p, found)
            except Exception:  # a failing progress display must not lose the sweep's observations
                log.exception("progress callback failed")
        return found

    results = await asyncio.gather(*(bounded(p) for p in planned))
    return [obs for batch in results for obs in batch]
