"""The bounded flow table and the grouping helper every detector aggregates with."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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


class KeyedColumns:
    """Numpy columns per key (a key is a row of int columns), found through a hash index: a batch of keys
    costs numpy work, not Python work per key. Keys get slots in the order they are given until
    `max_entries` are stored; later new keys are refused (slot -1) and counted in `overflow`."""

    def __init__(
        self, columns: dict[str, tuple[type[np.generic], float]], max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.max_entries = max_entries
        self.overflow = 0
        self._index = U64Index()
        self._key_cols: list[I64] = []
        self._size = 0
        self._fills = columns  # name -> (dtype, value of a slot not yet written)
        self.col: dict[str, npt.NDArray[Any]] = {name: np.zeros(0, dtype) for name, (dtype, _) in columns.items()}

    def __len__(self) -> int:
        return self._size

    def _grow(self, size: int, width: int) -> None:
        if not self._key_cols:
            self._key_cols = [np.zeros(0, np.int64) for _ in range(width)]
        cap = self._key_cols[0].size
        if size <= cap:
            return
        extra = max(size, min(2 * cap, self.max_entries), 1024) - cap
        self._key_cols = [np.concatenate([c, np.zeros(extra, np.int64)]) for c in self._key_cols]
        for name, (dtype, fill) in self._fills.items():
            self.col[name] = np.concatenate([self.col[name], np.full(extra, fill, dtype)])

    def slots(self, keys: list[I64]) -> I64:
        """Slot of each key (distinct, as columns), admitting new ones while there is room; -1 for refused keys."""
        hashes = mix64(*keys)
        slots = self._index.get(hashes)
        new = np.flatnonzero(slots < 0)
        if new.size:
            room = max(self.max_entries - self._size, 0)
            admitted = new[:room]
            self.overflow += int(new.size - admitted.size)
            if admitted.size:
                start, end = self._size, self._size + admitted.size
                slots[admitted] = np.arange(start, end)
                self._index.insert(hashes[admitted], slots[admitted])
                self._grow(end, len(keys))
                for stored, col in zip(self._key_cols, keys, strict=True):
                    stored[start:end] = col[admitted]
                self._size = end
        return slots

    def find(self, key: tuple[int, ...]) -> int:
        """The slot of one key, -1 if it is not stored."""
        return int(self.find_many([np.array([k], np.int64) for k in key])[0])

    def find_many(self, keys: list[I64]) -> I64:
        """The slot of each key (as columns), -1 where it is not stored; nothing is admitted."""
        if not self._size:
            return np.full(keys[0].size, -1, np.int64)
        return self._index.get(mix64(*keys))

    def key(self, slot: int) -> tuple[int, ...]:
        return tuple(int(c[slot]) for c in self._key_cols)

    def key_columns(self, slots: I64) -> list[I64]:
        """The keys of some slots, as columns (what `slots` and `find_many` take)."""
        return [c[slots] for c in self._key_cols]

    def keys(self, slots: I64) -> list[tuple[int, ...]]:
        return list(zip(*(c.tolist() for c in self.key_columns(slots)), strict=True)) if slots.size else []


class ActivityTable:
    """Bounded per-key Activity kept in numpy columns (KeyedColumns): a batch costs numpy work, not
    Python work per key. Keys are admitted in the order `group` sorts them until `max_entries` are
    stored; later new keys are counted in `overflow`."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        # per width (1 s, 60 s): peak events in one bin, and the current bin with its count
        self._table = KeyedColumns(
            {
                "count": (np.int64, 0),
                "first": (np.float64, np.inf),
                "last": (np.float64, -np.inf),
                **{f"peak{w}": (np.int64, 0) for w in (1, 60)},
                **{f"bin{w}": (np.int64, -1) for w in (1, 60)},
                **{f"bin_count{w}": (np.int64, 0) for w in (1, 60)},
            },
            max_entries,
        )

    def __len__(self) -> int:
        return len(self._table)

    @property
    def overflow(self) -> int:
        return self._table.overflow

    @property
    def max_entries(self) -> int:
        return self._table.max_entries

    @property
    def count(self) -> I64:
        return self._table.col["count"]

    @property
    def first(self) -> npt.NDArray[np.float64]:
        return self._table.col["first"]

    @property
    def last(self) -> npt.NDArray[np.float64]:
        return self._table.col["last"]

    @property
    def peak(self) -> dict[int, I64]:
        return {w: self._table.col[f"peak{w}"] for w in (1, 60)}

    def track(self, cols: list[I64], ts: npt.NDArray[np.float64]) -> None:
        """Fold events (one per row of `cols`, at times `ts`) in: counts, time span and peak rates."""
        if ts.size == 0:
            return
        seconds = np.floor(ts).astype(np.int64)
        order = np.lexsort((seconds, *cols[::-1]))  # by key, then by time bin: one sort for every measure
        keys = [c[order] for c in cols]
        seconds, times = seconds[order], ts[order]
        new_key = np.zeros(ts.size, bool)
        new_key[0] = True
        for c in keys:
            new_key[1:] |= c[1:] != c[:-1]
        starts = np.flatnonzero(new_key)
        slots = self._table.slots([c[starts] for c in keys])
        ok = slots >= 0
        at = slots[ok]
        self.count[at] += np.diff(np.append(starts, ts.size))[ok]
        self.first[at] = np.minimum(self.first[at], np.minimum.reduceat(times, starts)[ok])
        self.last[at] = np.maximum(self.last[at], np.maximum.reduceat(times, starts)[ok])
        key_of = np.cumsum(new_key) - 1
        for width in (1, 60):
            bins = seconds if width == 1 else seconds // width
            run = new_key.copy()
            run[1:] |= bins[1:] != bins[:-1]
            run_starts = np.flatnonzero(run)
            row_slot = slots[key_of[run_starts]]
            key_start = new_key[run_starts]
            row_bin, n = bins[run_starts], np.diff(np.append(run_starts, ts.size))
            keep = row_slot >= 0
            row_slot, row_bin, n, key_start = row_slot[keep], row_bin[keep], n[keep], key_start[keep]
            if not row_slot.size:
                continue
            col = self._table.col
            current, current_count, peak = col[f"bin{width}"], col[f"bin_count{width}"], col[f"peak{width}"]
            carry = key_start & (row_bin == current[row_slot])  # continues the bin the last batch ended in
            n = n + np.where(carry, current_count[row_slot], 0)
            np.maximum.at(peak, row_slot, n)
            key_end = np.r_[key_start[1:], True]
            current[row_slot[key_end]] = row_bin[key_end]
            current_count[row_slot[key_end]] = n[key_end]

    def activity(self, slot: int) -> Activity:
        act = Activity(int(self.count[slot]), float(self.first[slot]), float(self.last[slot]))
        act.peak_per_second, act.peak_per_minute = int(self.peak[1][slot]), int(self.peak[60][slot])
        return act

    def get(self, key: tuple[int, ...]) -> Activity | None:
        slot = self._table.find(key)
        return None if slot < 0 else self.activity(slot)

    def get_many(self, keys: list[I64]) -> list[Activity | None]:
        """`get` for many keys (as columns) at once: one hash lookup for all of them."""
        return [None if slot < 0 else self.activity(slot) for slot in self._table.find_many(keys).tolist()]

    def items(self) -> Iterator[tuple[tuple[int, ...], Activity]]:
        return ((self._table.key(slot), self.activity(slot)) for slot in range(len(self)))

    def largest(self, n: int, measure: I64) -> list[tuple[tuple[int, ...], Activity]]:
        """The n keys with the largest `measure` (a column of this table), ties in admission order."""
        order = np.argsort(-measure[: len(self)], kind="stable")[:n]
        return [(self._table.key(slot), self.activity(slot)) for slot in order.tolist()]


try:  # compiled loops for first_seen, U64Index and U64Set (see pyproject.toml); else the numpy rounds below
    from sentinel.traffic import _speedups as _compiled
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _compiled = None  # type: ignore[assignment]


def first_seen(keys: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.uint64], I64, I64, I64]:
    """The distinct keys in the order they first occur: (keys, first row, row count, key index of each row)."""
    if _compiled is not None:  # one pass through a hash table instead of two sorts
        keys = np.ascontiguousarray(keys, np.uint64)
        first, inverse = np.empty(keys.size, np.int64), np.empty(keys.size, np.int64)
        first = first[: _compiled.distinct(keys, first, inverse)]
        return keys[first], first, np.bincount(inverse, minlength=first.size), inverse
    return _first_seen_numpy(keys)


def _first_seen_numpy(keys: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.uint64], I64, I64, I64]:
    uniq, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return uniq[order], first[order], counts[order], rank[inverse.ravel()]


def rank_within(groups: I64) -> I64:
    """For each row, how many earlier rows have the same group."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    run = np.arange(groups.size) - np.repeat(starts, np.diff(np.r_[starts, groups.size]))
    out = np.empty_like(run)
    out[order] = run
    return out


def last_seen(inverse: I64, groups: int) -> I64:
    """For each of `groups` groups, the last row that belongs to it (rows give their group in `inverse`)."""
    last = np.full(groups, -1, np.int64)
    np.maximum.at(last, inverse, np.arange(inverse.size))
    return last


def members(values: I64, sorted_set: I64) -> npt.NDArray[np.bool_]:
    """`np.isin(values, sorted_set)` for a sorted set: one binary search per value, no sort of `values`."""
    if not sorted_set.size:
        return np.zeros(values.size, bool)
    at = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    found: npt.NDArray[np.bool_] = sorted_set[at] == values
    return found


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


class HashFilter:
    """A one-hash Bloom filter over 64-bit hashes (2 MB): `maybe` is False only for hashes never
    added, so dict and set lookups can be skipped for keys that are certainly new (floods)."""

    BITS = 21

    def __init__(self) -> None:
        self.bits = np.zeros(1 << self.BITS, bool)

    def _index(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.intp]:
        return (hashes >> np.uint64(64 - self.BITS)).astype(np.intp)

    def add(self, hashes: npt.NDArray[np.uint64]) -> None:
        self.bits[self._index(hashes)] = True

    def maybe(self, hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        found: npt.NDArray[np.bool_] = self.bits[self._index(hashes)]
        return found


#: U64Index finishes probe chains in Python once this few keys are left.
TAIL = 8


class U64Index:
    """uint64 key → non-negative int64 value, by open addressing (linear probing) in numpy columns.

    A batch's keys are looked up and inserted with numpy, a few vectorised probe rounds per batch; a
    dict answers one Python int at a time (~300 ns a key on random 64-bit keys, the hot spot of the
    scan tables). Kept at most half full; grows by doubling.
    """

    def __init__(self, bits: int = 10) -> None:
        self.keys = np.zeros(1 << bits, np.uint64)
        self.values = np.full(1 << bits, -1, np.int64)  # -1: empty cell
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def get(self, keys: npt.NDArray[np.uint64]) -> I64:
        """The value of each key, -1 where it is absent."""
        if _compiled is not None:
            out = np.empty(keys.size, np.int64)
            _compiled.index_get(self.keys, self.values, np.ascontiguousarray(keys, np.uint64), out)
            return out
        out = np.full(keys.size, -1, np.int64)
        mask = np.uint64(self.keys.size - 1)
        todo = np.arange(keys.size)
        pos = (keys & mask).astype(np.intp)
        while todo.size > TAIL:
            value = self.values[pos]
            filled = value >= 0
            hit = filled & (self.keys[pos] == keys[todo])
            out[todo[hit]] = value[hit]
            go_on = filled & ~hit  # an occupied cell of another key: probe the next one
            todo, pos = todo[go_on], (pos[go_on] + 1) & int(mask)
        if todo.size:  # the few long probe chains: a numpy round per step would cost more than this
            cells, stored = self.keys, self.values
            for i, home in zip(todo.tolist(), pos.tolist(), strict=True):
                key, at = keys[i], home
                while stored[at] >= 0:
                    if cells[at] == key:
                        out[i] = stored[at]
                        break
                    at = (at + 1) & int(mask)
        return out

    def cells(self, keys: npt.NDArray[np.uint64]) -> I64:
        """The cell of each key, -1 where it is absent."""
        if _compiled is not None:
            out = np.empty(keys.size, np.int64)
            _compiled.index_cells(self.keys, self.values, np.ascontiguousarray(keys, np.uint64), out)
            return out
        out = np.full(keys.size, -1, np.int64)
        mask = self.keys.size - 1
        todo = np.arange(keys.size)
        pos = (keys & np.uint64(mask)).astype(np.intp)
        while todo.size:
            filled = self.values[pos] >= 0
            hit = filled & (self.keys[pos] == keys[todo])
            out[todo[hit]] = pos[hit]
            go_on = filled & ~hit
            todo, pos = todo[go_on], (pos[go_on] + 1) & mask
        return out

    def assign(self, keys: npt.NDArray[np.uint64], values: I64) -> None:
        """Set the value of distinct keys, present or not."""
        at = self.cells(keys)
        present = at >= 0
        self.values[at[present]] = values[present]
        if not present.all():
            self.insert(keys[~present], values[~present])

    def insert(self, keys: npt.NDArray[np.uint64], values: I64) -> None:
        """Add keys that are distinct and absent."""
        if 2 * (self.size + keys.size) > self.keys.size:
            self._grow(2 * (self.size + keys.size))
        self._place(keys, values)
        self.size += keys.size

    def _place(self, keys: npt.NDArray[np.uint64], values: I64) -> None:
        if _compiled is not None:
            keys, values = np.ascontiguousarray(keys, np.uint64), np.ascontiguousarray(values, np.int64)
            _compiled.index_place(self.keys, self.values, keys, values)
            return
        mask = self.keys.size - 1
        todo = np.arange(keys.size)
        pos = (keys & np.uint64(mask)).astype(np.intp)
        while todo.size > TAIL:
            empty = np.flatnonzero(self.values[pos] < 0)
            placed = np.zeros(todo.size, bool)
            if empty.size:  # keys that reached the same empty cell all claim it; the last claim wins it
                cells = pos[empty]
                self.values[cells] = empty
                winners = empty[self.values[cells] == empty]
                self.keys[pos[winners]] = keys[todo[winners]]
                self.values[pos[winners]] = values[todo[winners]]
                placed[winners] = True
            todo, pos = todo[~placed], (pos[~placed] + 1) & mask
        stored = self.values
        for i, home in zip(todo.tolist(), pos.tolist(), strict=True):
            at = home
            while stored[at] >= 0:
                at = (at + 1) & mask
            self.keys[at], stored[at] = keys[i], values[i]

    def _grow(self, need: int) -> None:
        cap = self.keys.size
        while cap < need:
            cap *= 2
        used = self.values >= 0
        keys, values = self.keys[used], self.values[used]
        self.keys = np.zeros(cap, np.uint64)
        self.values = np.full(cap, -1, np.int64)
        self._place(keys, values)


#: U64Set stores keys as they are, except 0, which marks an empty cell: a key of 0 is stored as this
#: (a collision of two 64-bit hashes, 0 and this one, is as unlikely as any other).
ZERO_KEY = np.uint64(0x9E3779B97F4A7C15)


class U64Set:
    """A set of uint64 keys, open addressing like U64Index but with the keys alone (8 bytes a cell):
    the (key, value) pairs the scan tables remember are the largest thing they keep (up to 500,000
    each)."""

    def __init__(self, bits: int = 10) -> None:
        self.cells = np.zeros(1 << bits, np.uint64)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def contains(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        keys = np.where(keys == 0, ZERO_KEY, keys)
        if _compiled is not None:
            found = np.empty(keys.size, np.uint8)
            _compiled.set_contains(self.cells, keys, found)
            return found.view(np.bool_)
        out = np.zeros(keys.size, bool)
        mask = self.cells.size - 1
        todo = np.arange(keys.size)
        pos = (keys & np.uint64(mask)).astype(np.intp)
        while todo.size > TAIL:
            cell = self.cells[pos]
            hit = cell == keys[todo]
            out[todo[hit]] = True
            go_on = (cell != 0) & ~hit
            todo, pos = todo[go_on], (pos[go_on] + 1) & mask
        cells = self.cells
        for i, home in zip(todo.tolist(), pos.tolist(), strict=True):
            key, at = keys[i], home
            while cells[at] != 0:
                if cells[at] == key:
                    out[i] = True
                    break
                at = (at + 1) & mask
        return out

    def add(self, keys: npt.NDArray[np.uint64]) -> None:
        """Add keys that are distinct and absent."""
        if 2 * (self.size + keys.size) > self.cells.size:
            cap = self.cells.size
            while cap < 2 * (self.size + keys.size):
                cap *= 2
            old = self.cells[self.cells != 0]
            self.cells = np.zeros(cap, np.uint64)
            self._place(old)
        self._place(np.where(keys == 0, ZERO_KEY, keys))
        self.size += keys.size

    def _place(self, keys: npt.NDArray[np.uint64]) -> None:
        if _compiled is not None:
            _compiled.set_place(self.cells, np.ascontiguousarray(keys, np.uint64))
            return
        mask = self.cells.size - 1
        todo = np.arange(keys.size)
        pos = (keys & np.uint64(mask)).astype(np.intp)
        while todo.size > TAIL:
            empty = np.flatnonzero(self.cells[pos] == 0)
            placed = np.zeros(todo.size, bool)
            if empty.size:  # keys that reached the same empty cell all write it; the last write wins it
                at, claims = pos[empty], keys[todo[empty]]
                self.cells[at] = claims
                placed[empty[self.cells[at] == claims]] = True
            todo, pos = todo[~placed], (pos[~placed] + 1) & mask
        cells = self.cells
        for i, home in zip(todo.tolist(), pos.tolist(), strict=True):
            cell = home
            while cells[cell] != 0:
                cell = (cell + 1) & mask
            cells[cell] = keys[i]


class DistinctCounter:
    """Per key: events, distinct values (ports per host pair, hosts per scanner...), first/last time.

    Built for high-cardinality traffic (spoofed floods put a new key in nearly every packet): each
    key gets a slot in numpy columns, found through one dict of 64-bit key hashes that is queried in
    bulk (C-level `map`), once per distinct key of a batch; counts and times are updated with numpy.
    Python-level work is limited to new keys and to values that still fit a key's sample. Bounded:
    at most `max_keys` keys (checked per batch) and `max_pairs` remembered (key, value) pairs; past
    that, new keys are counted in `overflow` and not stored.
    """

    def __init__(
        self,
        max_keys: int = DEFAULT_MAX_ENTRIES,
        max_pairs: int = 500_000,
        sample: int = 10,
        marked_values: I64 | None = None,
    ) -> None:
        self.marked_values = marked_values if marked_values is not None else np.zeros(0, np.int64)
        self.max_keys, self.max_pairs, self.sample_size = max_keys, max_pairs, sample
        self._slot = U64Index()  # key hash → slot
        self._size = 0
        # the key's parts per slot, in numpy columns: building a tuple per admitted key cost more than
        # the rest of `add` on traffic where most keys are new (UDP flows, spoofed sources)
        self._key_cols: list[I64] = []
        self._cols = _Columns()
        self._sampled: list[tuple[I64, I64]] = []  # (slots, values) of the values kept as samples, in order
        self._tag_bits: dict[str, int] = {}
        self._seen = U64Set()  # hashes of the (key, value) pairs counted
        self._ranked = 0  # slots ranked so far, in the order keys first counted a distinct value
        self.overflow = 0

    def __len__(self) -> int:
        return self._size

    def _slots(self, khash: npt.NDArray[np.uint64]) -> I64:
        """Slot of each key hash, -1 where the key is unknown."""
        return self._slot.get(khash)

    def add(self, keys: list[I64], values: I64, ts: npt.NDArray[np.float64], tag: str = "") -> None:
        if values.size == 0:
            return
        khash = mix64(*keys)
        ukeys, first_at, _, inverse = first_seen(khash)  # the order only decides which slot a new key gets
        uslots = self._slots(ukeys)
        unknown = uslots < 0
        if unknown.any():
            if self._size >= self.max_keys:  # full: only keys already known keep counting
                self.overflow += int(np.count_nonzero(unknown[inverse]))
            else:
                uslots[unknown] = self._admit(ukeys[unknown], [k[first_at[unknown]] for k in keys])
        slots = uslots[inverse.ravel()]
        known = slots >= 0
        if not known.all():
            slots, values, ts, khash = slots[known], values[known], ts[known], khash[known]
        cols = self._cols
        counted = uslots[uslots >= 0]
        np.add.at(cols.events, slots, 1)  # touches only this batch's slots
        np.minimum.at(cols.first, slots, ts)
        if tag:
            bit = self._tag_bits.setdefault(tag, 1 << len(self._tag_bits))
            cols.tags[counted] |= bit
        pairs = mix64(khash.view(np.int64), values)
        uniq, pair_at, _, _ = first_seen(pairs)  # in row order: ranks and samples follow arrival
        seen = self._seen
        fresh = ~seen.contains(uniq)
        if not fresh.any():
            return
        if len(seen) < self.max_pairs:
            seen.add(uniq[fresh])
        new_index = pair_at[fresh]  # first row of each new (key, value), in row order
        fslots, fvalues = slots[new_index], values[new_index]
        np.add.at(cols.distinct, fslots, 1)
        np.maximum.at(cols.last, fslots, ts[new_index])  # time of the latest new value
        self._rank(fslots)
        self._mark(fslots, fvalues)
        self._sample(fslots, fvalues)

    def _admit(self, khash: npt.NDArray[np.uint64], columns: list[I64]) -> I64:
        start = self._size
        slots = np.arange(start, start + khash.size, dtype=np.int64)
        self._slot.insert(khash, slots)
        self._size += khash.size
        self._cols.grow(self._size, self.max_keys)
        if not self._key_cols:
            self._key_cols = [np.zeros(0, np.int64) for _ in columns]
        cap = self._cols.events.size
        for n, col in enumerate(columns):
            stored = self._key_cols[n]
            if stored.size < cap:
                stored = self._key_cols[n] = np.concatenate([stored, np.zeros(cap - stored.size, np.int64)])
            stored[start : self._size] = col
        return slots

    def _rank(self, fslots: I64) -> None:
        """Keys with equal distinct counts are reported in the order they first counted one."""
        cols = self._cols
        unranked = cols.rank[fslots] < 0
        if unranked.any():
            slots = first_seen(fslots[unranked].view(np.uint64))[0].view(np.int64)
            cols.rank[slots] = np.arange(self._ranked, self._ranked + slots.size)
            self._ranked += slots.size

    def _mark(self, fslots: I64, fvalues: I64) -> None:
        if not self.marked_values.size:
            return
        hit = np.isin(fvalues, self.marked_values)
        hit &= self._cols.marked[fslots] < 0
        if hit.any():
            slots, at, _, _ = first_seen(fslots[hit].view(np.uint64))  # the first marked value per key
            self._cols.marked[slots.view(np.int64)] = fvalues[hit][at]

    def _sample(self, fslots: I64, fvalues: I64) -> None:
        """Append new values to each key's sample while it has room (only those reach Python)."""
        if self.sample_size == 0:
            return
        open_ = self._cols.sampled[fslots] < self.sample_size  # keys with a full sample take nothing more
        if not open_.all():
            if not open_.any():
                return
            keep = np.flatnonzero(open_)
            self._sample_rows(fslots[keep], fvalues[keep])
            return
        self._sample_rows(fslots, fvalues)

    def _sample_rows(self, fslots: I64, fvalues: I64) -> None:
        order = np.argsort(fslots, kind="stable")
        sorted_slots = fslots[order]
        starts = np.flatnonzero(np.r_[True, sorted_slots[1:] != sorted_slots[:-1]])
        run = np.arange(sorted_slots.size) - np.repeat(starts, np.diff(np.r_[starts, sorted_slots.size]))
        room = run < self.sample_size - self._cols.sampled[sorted_slots]
        take = order[room]
        if take.size:
            take.sort()  # keep the pair order in which values arrived
            self._sampled.append((fslots[take], fvalues[take]))
            np.add.at(self._cols.sampled, fslots[take], 1)

    def counted(self, at_least: int = 1) -> int:
        """How many keys have at least this many distinct values (what `top` chooses from)."""
        return int(np.count_nonzero(self._cols.distinct[: self._size] >= at_least))

    def top(self, n: int) -> list[Fanout]:
        """The n keys with the most distinct values."""
        cols, size = self._cols, self._size
        distinct = cols.distinct[:size]
        counted = np.flatnonzero(distinct > 0)
        best = counted[np.lexsort((cols.rank[counted], -distinct[counted]))][:n]
        names = list(self._tag_bits.items())
        samples = self._samples_of(best)
        out = []
        keys = zip(*(c[best].tolist() for c in self._key_cols), strict=True) if best.size else iter(())
        for slot, key in zip(best.tolist(), keys, strict=True):
            mask, marked = int(cols.tags[slot]), int(cols.marked[slot])
            first, last = float(cols.first[slot]), float(cols.last[slot])
            out.append(
                Fanout(
                    key,
                    int(distinct[slot]),
                    int(cols.events[slot]),
                    first,
                    last if last >= first else first,
                    samples.get(slot, []),
                    {tag for tag, bit in names if mask & bit},
                    marked if marked >= 0 else None,
                )
            )
        return out

    def _samples_of(self, slots: I64) -> dict[int, list[int]]:
        if not self._sampled:
            return {}
        all_slots = np.concatenate([s for s, _ in self._sampled])
        all_values = np.concatenate([v for _, v in self._sampled])
        chosen = np.flatnonzero(np.isin(all_slots, slots))
        out: dict[int, list[int]] = {}
        for slot, value in zip(all_slots[chosen].tolist(), all_values[chosen].tolist(), strict=True):
            out.setdefault(slot, []).append(value)
        return out


class _Columns:
    """DistinctCounter's per-slot numpy columns, grown by doubling."""

    def __init__(self) -> None:
        self.events = np.zeros(0, np.int64)
        self.distinct = np.zeros(0, np.int64)
        self.sampled = np.zeros(0, np.int64)
        self.tags = np.zeros(0, np.int64)
        self.marked = np.zeros(0, np.int64)
        self.rank = np.zeros(0, np.int64)
        self.first = np.zeros(0, np.float64)
        self.last = np.zeros(0, np.float64)

    def grow(self, size: int, ceiling: int) -> None:
        """Room for `size` slots: doubling, but not past `ceiling` (the key cap) unless `size` needs it."""
        if size <= self.events.size:
            return
        cap = max(size, min(max(2 * self.events.size, 1024), ceiling))
        for name, fill in (("events", 0), ("distinct", 0), ("sampled", 0), ("tags", 0), ("marked", -1), ("rank", -1)):
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.full(cap - old.size, fill, np.int64)]))
        self.first = np.concatenate([self.first, np.full(cap - self.first.size, np.inf)])
        self.last = np.concatenate([self.last, np.full(cap - self.last.size, -np.inf)])
