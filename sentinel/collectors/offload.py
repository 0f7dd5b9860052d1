"""CPU-heavy pure work of the probes (HTML analysis) in worker processes, beside the event loop.

A thread does not take such work off the loop: it holds the GIL while it parses, so every probe's callbacks wait
for it (in a sweep of 1,354 sites the web-integrity analyses were a quarter of the interpreter's time). Worker
processes are started on first use (spawned, so they inherit no sockets, threads or loop state), one fewer than
the machine's cores and at least one, and live until the interpreter exits. If they cannot be started or one
dies, the work runs in a thread as before, so an observation never depends on the pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Generic, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
MAX_WORKERS = 4
log = logging.getLogger(__name__)


class _Workers:
    """The process pool, started on first use; `broken` once it could not start or lost a worker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.broken = False

    def executor(self) -> concurrent.futures.ProcessPoolExecutor | None:
        with self.lock:
            if self.pool is None and not self.broken:
                try:
                    spawn = multiprocessing.get_context("spawn")
                    self.pool = concurrent.futures.ProcessPoolExecutor(workers(), mp_context=spawn)
                except (OSError, ValueError) as exc:  # no processes here (limits, sandbox): threads it is
                    log.warning("cannot start worker processes (%s); analysing in threads", exc)
                    self.broken = True
            return self.pool

    def shutdown(self) -> None:
        with self.lock:
            pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def mark_broken(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        with self.lock:
            if self.pool is pool:
                self.pool, self.broken = None, True
        pool.shutdown(wait=False, cancel_futures=True)


_WORKERS = _Workers()


def workers() -> int:
    """Worker processes: leave a core to the event loop."""
    return max(1, min(MAX_WORKERS, (os.cpu_count() or 2) - 1))


def shutdown() -> None:
    """Stop the worker processes (started again on next use); interpreter exit does this too."""
    _WORKERS.shutdown()


async def run_cpu(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a worker process (arguments and result are pickled), else in a thread."""
    pool = _WORKERS.executor()
    if pool is not None:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, _Call(fn, args, kwargs))
        except BrokenProcessPool:
            log.warning("a worker process died; analysing in threads from now on")
            _WORKERS.mark_broken(pool)
    return await asyncio.to_thread(fn, *args, **kwargs)


class _Call(Generic[T]):
    """A picklable call (run_in_executor takes positional arguments only)."""

    def __init__(self, fn: Callable[..., T], args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def __call__(self) -> T:
        return self.fn(*self.args, **self.kwargs)
