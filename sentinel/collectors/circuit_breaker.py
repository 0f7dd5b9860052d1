"""Per-target circuit breaker: back off a target after consecutive failures, a burst of 5xx, or 429/Retry-After.

Closed (normal) → open (every admission refused until the back-off ends) → half-open (probes pass again;
the first success closes the circuit, the first failure opens it again with a doubled back-off).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum


class CircuitOpen(OSError):  # noqa: N818 - a verdict, like OutOfScope
    """The target's circuit is open: Sentinel is backing off and sent nothing."""


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass
class _Circuit:
    backoff: float
    failures: int = 0
    server_errors: deque[float] = field(default_factory=deque)
    open_until: float | None = None
    reason: str = ""
    trips: int = 0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        server_error_burst: int = 5,
        burst_window: float = 10.0,
        base_backoff: float = 5.0,
        max_backoff: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.server_error_burst = server_error_burst
        self.burst_window = burst_window
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def _circuit(self, target: str) -> _Circuit:
        circuit = self._circuits.get(target)
        if circuit is None:
            circuit = self._circuits[target] = _Circuit(self.base_backoff)
        return circuit

    def state(self, target: str) -> CircuitState:
        circuit = self._circuits.get(target)
        if circuit is None or circuit.open_until is None:
            return CircuitState.CLOSED
        return CircuitState.OPEN if self._clock() < circuit.open_until else CircuitState.HALF_OPEN

    def check(self, target: str) -> None:
        """Raise CircuitOpen while the target is backed off; otherwise let the probe pass."""
        circuit = self._circuits.get(target)
        if circuit is None or circuit.open_until is None:
            return
        remaining = circuit.open_until - self._clock()
        if remaining > 0:
            raise CircuitOpen(f"{target}: backing off for {remaining:.1f} s more ({circuit.reason})")

    def record_success(self, target: str) -> None:
        circuit = self._circuits.get(target)
        if circuit is None:
            return
        circuit.failures = 0
        if circuit.open_until is not None and self._clock() >= circuit.open_until:
            circuit.open_until = None
            circuit.backoff = self.base_backoff

    def record_failure(self, target: str, reason: str = "connection failures") -> None:
        circuit = self._circuit(target)
        circuit.failures += 1
        half_open = circuit.open_until is not None and self._clock() >= circuit.open_until
        if half_open or circuit.failures >= self.failure_threshold:
            self._trip(circuit, circuit.backoff, f"{circuit.failures} consecutive {reason}")

    def record_status(self, target: str, status: int, retry_after: str | None = None) -> None:
        """Feed an HTTP status: 429 (and 503 with Retry-After) back off at once; a burst of 5xx trips too."""
        delay = parse_retry_after(retry_after)
        circuit = self._circuit(target)
        if status == 429 or (status == 503 and delay is not None):
            wait = circuit.backoff if delay is None else max(delay, 1.0)
            self._trip(circuit, wait, f"HTTP {status}" + (f", Retry-After {retry_after}" if retry_after else ""))
            return
        if status < 500:
            self.record_success(target)
            return
        now = self._clock()
        circuit.server_errors.append(now)
        while circuit.server_errors and circuit.server_errors[0] < now - self.burst_window:
            circuit.server_errors.popleft()
        if len(circuit.server_errors) >= self.server_error_burst:
            circuit.server_errors.clear()
            self._trip(circuit, circuit.backoff, f"{self.server_error_burst} HTTP 5xx within {self.burst_window:g} s")

    def _trip(self, circuit: _Circuit, delay: float, reason: str) -> None:
        circuit.open_until = self._clock() + min(delay, self.max_backoff)
        circuit.reason = reason
        circuit.failures = 0
        circuit.trips += 1
        circuit.backoff = min(max(circuit.backoff, delay) * 2, self.max_backoff)
