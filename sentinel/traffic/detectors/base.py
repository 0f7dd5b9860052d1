"""What every detector shares: the feed/report protocol and how observations are stamped."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sentinel.models import Observation
from sentinel.traffic.addresses import AddressBook
from sentinel.traffic.decode import Packets

K = TypeVar("K")
V = TypeVar("V")

#: Lists in observation data are cut to this many items (peers, ports, samples).
SAMPLE = 10
#: At most this many observations per kind, the largest first, so output stays bounded.
MAX_PER_KIND = 2_000


@dataclass(frozen=True, slots=True)
class Context:
    book: AddressBook
    probe: str  # "pcap" or "sniff"
    source: str  # file name or interface
    last_ts: float
    #: live capture: packets the kernel dropped in this window (None for files, whose loss is unknown);
    #: every observation carries it, so a detection from a lossy window never reads as complete
    dropped: int | None = None

    @property
    def observed_at(self) -> datetime:
        ts = self.last_ts if 0 < self.last_ts < 32503680000 else 0.0
        return datetime.fromtimestamp(ts, UTC) if ts else datetime.now(UTC)

    def observation(self, kind: str, system_id: str, target: str, data: dict[str, Any]) -> Observation:
        return Observation(
            kind=kind,
            system_id=system_id,
            target=target,
            observed_at=self.observed_at,
            probe=self.probe,
            data={**data, "capture": self.source}
            if self.dropped is None
            else {**data, "capture": self.source, "capture.dropped": self.dropped, "capture.lossy": self.dropped > 0},
        )

    def ips(self, ids: Iterable[int]) -> list[str]:
        return [self.book.text(i) for i in heapq.nsmallest(SAMPLE, ids)]  # sorted, without sorting all


class Detector(Protocol):
    def feed(self, p: Packets) -> None: ...

    def observations(self, ctx: Context) -> list[Observation]: ...


def largest(items: list[tuple[float, Observation]]) -> list[Observation]:
    items.sort(key=lambda item: -item[0])
    return [obs for _, obs in items[:MAX_PER_KIND]]


def top_keys(table: Iterable[tuple[K, V]], measure: Callable[[V], float]) -> list[tuple[K, V]]:
    """The MAX_PER_KIND entries with the largest measure, chosen before any text is formatted."""
    return heapq.nlargest(MAX_PER_KIND, table, key=lambda kv: measure(kv[1]))
