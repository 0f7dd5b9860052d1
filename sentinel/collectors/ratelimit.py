"""Token buckets for per-target and global probe rates (reservation style, so waiters queue fairly)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def reserve(self) -> float:
        """Take one token now; return how long the caller must wait before using it."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class RateLimiter:
    """A global bucket plus one bucket per target address."""

    def __init__(
        self,
        per_target_rate: float,
        per_target_burst: float,
        global_rate: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_rate, self._per_burst, self._clock = per_target_rate, per_target_burst, clock
        self._global = TokenBucket(global_rate, max(1.0, global_rate / 10), clock)
        self._targets: dict[str, TokenBucket] = {}

    def reserve(self, target: str) -> float:
        bucket = self._targets.get(target)
        if bucket is None:
            bucket = self._targets[target] = TokenBucket(self._per_rate, self._per_burst, self._clock)
        return max(bucket.reserve(), self._global.reserve())

    async def acquire(self, target: str) -> None:
        delay = self.reserve(target)
        if delay > 0:
            await asyncio.sleep(delay)
