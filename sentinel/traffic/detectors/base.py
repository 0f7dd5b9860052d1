"""What every detector shares: the feed/report protocol and how observations are stamped."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
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
#: On every observation: how many more of its list (its kind, or for scans and sweeps its direction
#: and protocol family) the MAX_PER_KIND cap left out, so a truncated report says that it is one.
UNREPORTED = "capture.unreported"
#: what `Context.observation` and `largest` put on every detection, besides the detector's own fields
STAMPED_FIELDS = frozenset({"capture", "capture.dropped", "capture.lossy", UNREPORTED})


def reports(declared: Mapping[str, Iterable[str]]) -> Mapping[str, frozenset[str]]:
    """A detector's `fields`: the data fields it reports per observation kind, which rules may read (`sentinel
    rules lint` checks every field a rule reads against them), each with the fields every detection carries."""
    return MappingProxyType({kind: frozenset(names) | STAMPED_FIELDS for kind, names in declared.items()})


@dataclass(frozen=True, slots=True)
class Context:
    book: AddressBook
    probe: str  # "pcap" or "sniff"
    source: str  # file name or interface
    last_ts: float
    #: live capture: packets the kernel dropped in this window (None for files, whose loss is unknown);
    #: every observation carries it, so a detection from a lossy window never reads as complete
    dropped: int | None = None
    observed_at: datetime = field(init=False)  # one time for all observations of a report, computed once

    def __post_init__(self) -> None:
        ts = self.last_ts if 0 < self.last_ts < 32503680000 else 0.0
        object.__setattr__(self, "observed_at", datetime.fromtimestamp(ts, UTC) if ts else datetime.now(UTC))

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


def largest(items: list[tuple[float, Observation]], candidates: int = 0) -> list[Observation]:
    """The MAX_PER_KIND largest, each stamped with how many were left out; `candidates`: how many
    observations there were before any preselection (`top_keys`), if more than `items`."""
    items.sort(key=lambda item: -item[0])
    kept = [obs for _, obs in items[:MAX_PER_KIND]]
    return unreported(kept, max(candidates, len(items)) - len(kept))


def unreported(kept: list[Observation], left_out: int) -> list[Observation]:
    """Stamp UNREPORTED on observations made by `Context.observation`, whose data dicts are their own: in place,
    since copying every observation's data again cost more than making it."""
    out = []
    for obs in kept:
        if isinstance(obs.data, dict):
            obs.data[UNREPORTED] = left_out
            out.append(obs)
        else:
            out.append(replace(obs, data={**obs.data, UNREPORTED: left_out}))
    return out


def top_keys(table: Iterable[tuple[K, V]], measure: Callable[[V], float]) -> list[tuple[K, V]]:
    """The MAX_PER_KIND entries with the largest measure, chosen before any text is formatted."""
    return heapq.nlargest(MAX_PER_KIND, table, key=lambda kv: measure(kv[1]))
