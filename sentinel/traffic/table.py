"""The bounded flow table and the grouping helper every detector aggregates with."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

K = TypeVar("K")
V = TypeVar("V")
I64 = npt.NDArray[np.int64]
N = TypeVar("N", np.int64, np.float64)

#: Default cap on entries per detector table; beyond it new keys are counted, not stored.
DEFAULT_MAX_ENTRIES = 65_536


class BoundedTable(Generic[K, V]):
    """A dict that refuses new keys once full (existing keys keep updating); `overflow` counts refusals."""

    def __init__(self, factory: Callable[[], V], max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._data: dict[K, V] = {}
        self._factory = factory
        self.max_entries = max_entries
        self.overflow = 0

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is None:
            if len(self._data) >= self.max_entries:
                self.overflow += 1
                return None
            value = self._data[key] = self._factory()
        return value

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(self._data.items())

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True, slots=True)
class Groups:
    """Unique rows of some int columns: `keys[c][g]` is column c of group g; `counts[g]` its size."""

    keys: list[I64]
    counts: I64
    order: I64  # sorts the input rows by group
    starts: I64  # first sorted row of each group

    def __len__(self) -> int:
        return int(self.counts.size)

    def rows(self) -> Iterator[tuple[int, ...]]:
        cols = [k.tolist() for k in self.keys]
        return zip(*cols, strict=True)

    def reduce_min(self, values: npt.NDArray[N]) -> npt.NDArray[N]:
        return np.minimum.reduceat(values[self.order], self.starts) if len(self) else values[:0]

    def reduce_max(self, values: npt.NDArray[N]) -> npt.NDArray[N]:
        return np.maximum.reduceat(values[self.order], self.starts) if len(self) else values[:0]

    def reduce_sum(self, values: I64) -> I64:
        return np.add.reduceat(values[self.order], self.starts) if len(self) else values[:0]


def group(*cols: I64) -> Groups:
    n = cols[0].size
    if n == 0:
        empty = np.zeros(0, np.int64)
        return Groups([c[:0] for c in cols], empty, empty, empty)
    order = np.lexsort(cols[::-1])
    sorted_cols = [c[order] for c in cols]
    change = np.zeros(n, bool)
    change[0] = True
    for c in sorted_cols:
        change[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(change)
    counts = np.diff(np.append(starts, n))
    return Groups([c[starts] for c in sorted_cols], counts, order, starts)


@dataclass(slots=True)
class Activity:
    """Count, time span and peak per-second / per-minute rates of one key's events."""

    count: int = 0
    first: float = float("inf")
    last: float = float("-inf")
    peak_per_second: int = 0
    peak_per_minute: int = 0
    _second: int = -1  # the current one-second bin and its count
    _second_count: int = 0
    _minute: int = -1
    _minute_count: int = 0

    def add(self, first: float, last: float, count: int) -> None:
        self.count += count
        self.first = min(self.first, first)
        self.last = max(self.last, last)

    def add_bin(self, width: int, index: int, count: int) -> None:
        """Events in time bin `index` of `width` (1 or 60) seconds; bins arrive roughly in time order."""
        if width == 1:
            self._second_count = self._second_count + count if index == self._second else count
            self._second = index
            self.peak_per_second = max(self.peak_per_second, self._second_count)
        else:
            self._minute_count = self._minute_count + count if index == self._minute else count
            self._minute = index
            self.peak_per_minute = max(self.peak_per_minute, self._minute_count)

    @property
    def duration(self) -> float:
        return max(self.last - self.first, 0.0) if self.count else 0.0

    def fields(self, prefix: str) -> dict[str, float | int]:
        return {
            f"{prefix}.count": self.count,
            f"{prefix}.duration_s": round(self.duration, 3),
            f"{prefix}.peak_per_second": self.peak_per_second,
            f"{prefix}.peak_per_minute": self.peak_per_minute,
        }


def track_activity(
    table: BoundedTable[tuple[int, ...], Activity], cols: list[I64], ts: npt.NDArray[np.float64]
) -> None:
    """Fold events (one per row of `cols`, at times `ts`) into per-key Activity with peak rates."""
    if ts.size == 0:
        return
    g = group(*cols)
    firsts, lasts = g.reduce_min(ts), g.reduce_max(ts)
    for key, n, first, last in zip(g.rows(), g.counts.tolist(), firsts.tolist(), lasts.tolist(), strict=True):
        act = table.get(key)
        if act is not None:
            act.add(first, last, n)
    for width in (1, 60):
        bins = (ts // width).astype(np.int64)
        gb = group(*cols, bins)
        for row, n in zip(gb.rows(), gb.counts.tolist(), strict=True):
            act = table.get(row[:-1])
            if act is not None:
                act.add_bin(width, row[-1], n)


def mix64(*cols: I64) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of rows of int columns; collisions (negligible below ~10^8 keys) only blur counts."""
    with np.errstate(over="ignore"):
        h = np.full(cols[0].size, 0x9E3779B97F4A7C15, np.uint64)
        for col in cols:
            h ^= col.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2))
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
        return h


@dataclass(slots=True)
class Fanout:
    """One key's totals, as DistinctCounter.top reports them."""

    key: tuple[int, ...]
    distinct: int
    events: int
    first: float
    last: float
    sample: list[int]
    tags: set[str]
    marked: int | None  # the first value seen that is in `marked_values` (e.g. a registered address)


class DistinctCounter:
    """Per key: events, distinct values (ports per host pair, hosts per scanner...), first/last time.

    Built for high-cardinality traffic (spoofed floods put a new key in nearly every packet): state is
    a few dicts keyed by 64-bit hashes and updated with C-level bulk operations (Counter.update,
    dict.update, set.update); Python-level work is limited to new (key, value) pairs. Bounded: at
    most `max_keys` keys and `max_pairs` remembered (key, value) pairs; past that, new ones are
    counted in `overflow` and not stored.
    """

    def __init__(
        self,
        max_keys: int = DEFAULT_MAX_ENTRIES,
        max_pairs: int = 500_000,
        sample: int = 10,
        marked_values: I64 | None = None,
    ) -> None:
        self.marked_values = marked_values if marked_values is not None else np.zeros(0, np.int64)
        self.marked: dict[int, int] = {}
        self.max_keys, self.max_pairs, self.sample_size = max_keys, max_pairs, sample
        self.events: Counter[int] = Counter()
        self.distinct: Counter[int] = Counter()
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.parts: dict[int, tuple[int, ...]] = {}
        self.samples: dict[int, list[int]] = {}
        self.tags: dict[str, set[int]] = {}
        self._seen: set[int] = set()
        self.overflow = 0

    def add(self, keys: list[I64], values: I64, ts: npt.NDArray[np.float64], tag: str = "") -> None:
        if values.size == 0:
            return
        khash = mix64(*keys)
        if len(self.parts) >= self.max_keys:  # full: only keys already known keep counting
            known = np.fromiter((h in self.parts for h in khash.tolist()), bool, khash.size)
            self.overflow += int((~known).sum())
            keys, values, ts, khash = [k[known] for k in keys], values[known], ts[known], khash[known]
        klist = khash.tolist()
        new_keys = {h: i for i, h in enumerate(klist) if h not in self.parts}
        if new_keys:
            index = np.fromiter(new_keys.values(), np.int64, len(new_keys))
            columns = [k[index].tolist() for k in keys]
            self.parts.update(zip(new_keys, zip(*columns, strict=True), strict=True))
            self.first.update(zip(new_keys, ts[index].tolist(), strict=True))
        self.events.update(klist)
        if tag:
            self.tags.setdefault(tag, set()).update(klist)
        pairs = mix64(khash.view(np.int64), values)
        uniq, first_index = np.unique(pairs, return_index=True)
        seen = self._seen
        fresh = np.fromiter((h not in seen for h in uniq.tolist()), bool, uniq.size)
        if not fresh.any():
            return
        if len(seen) < self.max_pairs:
            seen.update(uniq[fresh].tolist())
        new_index = first_index[fresh]
        fresh_keys = khash[new_index].tolist()
        self.distinct.update(fresh_keys)
        self.last.update(zip(fresh_keys, ts[new_index].tolist(), strict=True))  # time of the latest new value
        fresh_values = values[new_index]
        if self.marked_values.size:
            hit = np.isin(fresh_values, self.marked_values)
            for h, v in zip(khash[new_index][hit].tolist(), fresh_values[hit].tolist(), strict=True):
                self.marked.setdefault(h, v)
        samples, size = self.samples, self.sample_size
        for h, v in zip(fresh_keys, fresh_values.tolist(), strict=True):
            sample = samples.get(h)
            if sample is None:
                samples[h] = [v]
            elif len(sample) < size:
                sample.append(v)

    def top(self, n: int) -> list[Fanout]:
        """The n keys with the most distinct values."""
        out = []
        for h, distinct in self.distinct.most_common(n):
            tags = {tag for tag, members in self.tags.items() if h in members}
            out.append(
                Fanout(
                    self.parts[h],
                    distinct,
                    self.events[h],
                    self.first[h],
                    self.last.get(h, self.first[h]),
                    self.samples.get(h, []),
                    tags,
                    self.marked.get(h),
                )
            )
        return out
