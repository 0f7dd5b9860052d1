"""table.py's open-addressing tables (U64Index, U64Set) and `first_seen`: the compiled loops (_speedups) and the
numpy rounds they replace answer every lookup the same, on keys that collide in their low bits, on the key 0, across
growth; and the counters built on them (DistinctCounter, ActivityTable) report the same with either."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sentinel.traffic import table
from sentinel.traffic.table import ActivityTable, DistinctCounter, U64Index, U64Set, first_seen


@pytest.fixture(params=["compiled", "numpy"])
def probes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "compiled":
        if table._compiled is None:
            if os.environ.get("CI"):
                pytest.fail("sentinel/traffic/_speedups.c is not built: `pip install -e .` compiles it (needs gcc)")
            pytest.skip("the compiled table probes are not built (pip install -e . with a C compiler)")
    else:
        monkeypatch.setattr(table, "_compiled", None)
    return str(request.param)


def key_batches(seed: int) -> list[np.ndarray]:
    """Batches of distinct-within-batch keys: random, clustered in the low bits (long probe chains), 0 and its
    stand-in, and repeats of earlier batches."""
    rng = np.random.default_rng(seed)
    batches = [
        rng.integers(0, 2**63, 3000, dtype=np.uint64) * np.uint64(2) + np.uint64(1),
        (rng.integers(0, 2**40, 2000, dtype=np.uint64) << np.uint64(20)) | np.uint64(7),  # same low bits
        np.array([0, int(table.ZERO_KEY) ^ 1, 5, 1 << 63], np.uint64),
        np.arange(1, 5000, dtype=np.uint64) * np.uint64(1024),
    ]
    return [np.unique(b) for b in batches]


def test_index_answers_the_same_as_a_dict(probes: str) -> None:
    index, truth = U64Index(bits=4), {}
    for n, keys in enumerate(key_batches(1)):
        fresh = np.array([k for k in keys.tolist() if k not in truth], np.uint64)
        values = np.arange(len(truth), len(truth) + fresh.size, dtype=np.int64)
        index.insert(fresh, values)
        truth.update(zip(fresh.tolist(), values.tolist(), strict=True))
        probe = np.concatenate([keys, keys + np.uint64(3), np.array([2**64 - 1], np.uint64)])
        expected = [truth.get(k, -1) for k in probe.tolist()]
        assert index.get(probe).tolist() == expected, n
        cells = index.cells(probe)
        assert ((cells >= 0) == (np.array(expected) >= 0)).all()
        assert (index.keys[cells[cells >= 0]] == probe[cells >= 0]).all()
    assert len(index) == len(truth) and 2 * len(index) <= index.keys.size
    # assign overwrites present keys and inserts absent ones
    some = np.array([*list(truth)[:50], 2**62 + 11], np.uint64)
    index.assign(some, np.full(some.size, 7, np.int64))
    assert (index.get(some) == 7).all()


def test_first_seen_groups_rows_as_a_dict_does(probes: str) -> None:
    rng = np.random.default_rng(4)
    cases = [
        *key_batches(5),
        np.zeros(0, np.uint64),
        np.full(1000, 42, np.uint64),
        rng.integers(0, 40, 5000).astype(np.uint64),  # small integers: many repeats
        np.array([0, 2**64 - 1, 0, 1, 2**64 - 1], np.uint64),
    ]
    for n, keys in enumerate(cases):
        groups: dict[int, int] = {}
        rows = [groups.setdefault(k, len(groups)) for k in keys.tolist()]
        firsts = {g: keys.tolist().index(k) for k, g in groups.items()}
        uniq, first, count, inverse = first_seen(keys)
        assert uniq.tolist() == list(groups), n
        assert first.tolist() == [firsts[g] for g in range(len(groups))], n
        assert count.tolist() == [rows.count(g) for g in range(len(groups))], n
        assert inverse.tolist() == rows, n


def test_a_sample_holds_the_first_values_in_the_order_they_arrived(probes: str) -> None:
    counter = DistinctCounter(sample=5)
    values = np.array([9000, 3, 700, 1, 3, 80, 2, 5], np.int64)
    counter.add([np.zeros(values.size, np.int64)], values, np.arange(values.size, dtype=np.float64))
    counter.add([np.zeros(2, np.int64)], np.array([4, 6], np.int64), np.array([9.0, 10.0]))
    (fanout,) = counter.top(1)
    assert fanout.sample == [9000, 3, 700, 1, 80]
    assert (fanout.distinct, fanout.events) == (9, 10)


def test_set_answers_the_same_as_a_python_set(probes: str) -> None:
    cells, truth = U64Set(bits=3), set()
    for n, keys in enumerate(key_batches(2)):
        fresh = np.array([k for k in keys.tolist() if k not in truth], np.uint64)
        cells.add(fresh)
        truth.update(fresh.tolist())
        probe = np.concatenate([keys, keys ^ np.uint64(1 << 40)])
        assert cells.contains(probe).tolist() == [k in truth for k in probe.tolist()], n
    assert len(cells) == len(truth)


def test_counters_report_the_same_with_either_probe_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    if table._compiled is None:
        pytest.skip("the compiled table probes are not built")
    rng = np.random.default_rng(3)
    batches = []
    for _ in range(12):
        n = 4000
        src = rng.integers(0, 300, n)  # few keys with many values, and spoofed ones
        src[: n // 2] = rng.integers(1, 2**32, n // 2)
        batches.append((src, rng.integers(0, 65536, n), np.sort(rng.random(n)) * 100))
    results = []
    for compiled in (table._compiled, None):
        monkeypatch.setattr(table, "_compiled", compiled)
        counter, activity = DistinctCounter(max_keys=5000, max_pairs=20_000, sample=5), ActivityTable(3000)
        for src, port, ts in batches:
            counter.add([src], port, ts, "syn")
            activity.track([src, port % 7], ts)
        top = [(f.key, f.distinct, f.events, f.first, f.last, f.sample) for f in counter.top(100)]
        largest = [(k, a.count, a.peak_per_second) for k, a in activity.largest(100, activity.count)]
        results.append((top, counter.overflow, largest, activity.overflow, len(counter), len(activity)))
    assert results[0] == results[1]
    assert results[0][1] > 0 and results[0][3] > 0  # both caps were reached: the overflow paths ran too
