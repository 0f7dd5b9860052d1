"""Progress for long work (scans, reports, `compliance status`, capture analysis): a rich bar on a terminal,
otherwise one plain line every `interval` seconds on stderr, so a cron log shows the job is alive without
drowning in updates. Off a terminal a heartbeat keeps that promise through one long step (a PDF printing, a
10 M-packet capture in its child) where nothing advances."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressReporter:
    """`with ProgressReporter("report", total) as p: p.advance()`; quiet=True reports nothing."""

    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        interactive: bool | None = None,
        quiet: bool = False,
    ) -> None:
        self.label, self.total, self.done = label, max(total, 0), 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.clock, self.quiet = interval, clock, quiet
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._start = self._last = 0.0
        self._lock = threading.Lock()  # the heartbeat thread and advance() share the stream
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> ProgressReporter:
        self._start = self._last = self.clock()
        if self.quiet:
            return self
        if self.interactive:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total or None)
        elif clock_is_real(self.clock):
            self._beat = threading.Thread(target=self._heartbeat, name="progress", daemon=True)
            self._beat.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(min(self.interval, 1.0)):
            self._maybe_write(self.clock())

    def _maybe_write(self, now: float) -> None:
        with self._lock:
            if now - self._last >= self.interval:
                self._last = now
                self.stream.write(self.line(now) + "\n")
                self.stream.flush()

    def stage(self, label: str, total: int) -> None:
        """Start another stage (e.g. assessing, then rendering) with its own count."""
        self.label, self.total, self.done = label, max(total, 0), 0
        self._start = self._last = self.clock()
        if self._bar is not None and self._task is not None:
            self._bar.reset(self._task, total=self.total or None, description=label)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.quiet:
            return
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, n)
            return
        self._maybe_write(self.clock())

    def line(self, now: float) -> str:
        elapsed = now - self._start
        if self.total:
            share = self.done / self.total
            eta = f", ETA {elapsed / share - elapsed:.0f} s" if 0 < share < 1 else ""
            return f"{self.label}: {self.done}/{self.total} ({share:.0%}), {elapsed:.0f} s elapsed{eta}"
        return f"{self.label}: {self.done} done, {elapsed:.0f} s elapsed"

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=2)
            self._beat = None


def clock_is_real(clock: Callable[[], float]) -> bool:
    """Tests drive the reporter with their own clock; the heartbeat thread runs only on the real one."""
    return clock is time.monotonic
