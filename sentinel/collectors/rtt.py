"""Adaptive probe timeouts from measured round-trip times (RFC 6298 smoothing, nmap-style floor and ceiling).

Each target keeps a smoothed RTT and its variation; a probe waits `srtt + 4 * rttvar`, clamped to
[floor, ceiling]. A target with no sample yet borrows the estimate of every target together (nmap's group
timing), and before any sample at all the initial timeout applies. Only unambiguous samples may be fed
(Karn: never the answer to a retransmission, which may belong to the first copy).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RttEstimator:
    srtt: float | None = None  # seconds
    rttvar: float = 0.0

    def sample(self, rtt: float) -> None:
        rtt = max(0.0, rtt)
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt

    def timeout(self, initial: float, floor: float, ceiling: float) -> float:
        if self.srtt is None:
            return min(max(initial, floor), ceiling)
        return min(max(self.srtt + 4 * self.rttvar, floor), ceiling)


class RttTable:
    """Per-target estimators plus one over all targets (the fallback for targets not yet measured)."""

    def __init__(self, initial: float, floor: float, ceiling: float, max_targets: int = 65536) -> None:
        if not 0 < floor <= ceiling:
            raise ValueError("the RTT timeout floor must be > 0 and <= the ceiling")
        self.initial, self.floor, self.ceiling = initial, floor, ceiling
        self._max = max_targets
        self._targets: dict[str, RttEstimator] = {}
        self._all = RttEstimator()

    def sample(self, target: str, rtt_s: float) -> None:
        estimator = self._targets.get(target)
        if estimator is None:
            if len(self._targets) >= self._max:  # bounded: forget the oldest target
                del self._targets[next(iter(self._targets))]
            estimator = self._targets[target] = RttEstimator()
        estimator.sample(rtt_s)
        self._all.sample(rtt_s)

    def timeout(self, target: str, borrow: bool = True) -> float:
        """Seconds to wait for an answer from `target`; an unmeasured target borrows the estimate over all
        targets (`borrow`) or gets the initial timeout."""
        estimator = self._targets.get(target)
        if estimator is None or estimator.srtt is None:
            estimator = self._all if borrow else RttEstimator()
        return estimator.timeout(self.initial, self.floor, self.ceiling)

    def measured(self, target: str) -> bool:
        return target in self._targets
