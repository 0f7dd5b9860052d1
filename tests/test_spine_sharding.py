from __future__ import annotations

import pytest

from sentinel.registry.sharding import parse_shard, shard_of

IDS = [f"sys-{i:05d}" for i in range(4000)]


def test_every_system_has_exactly_one_shard_and_load_is_even() -> None:
    counts = [0, 0, 0]
    for sid in IDS:
        counts[shard_of(sid, 3) - 1] += 1
    assert sum(counts) == len(IDS) and min(counts) > len(IDS) / 3 * 0.9


def test_adding_an_instance_moves_few_systems() -> None:
    moved = sum(1 for sid in IDS if shard_of(sid, 3) != shard_of(sid, 4))
    assert moved / len(IDS) < 0.30  # ideal is 1/4; a modulo split would move ~3/4
    assert all(shard_of(sid, 4) == 4 for sid in IDS if shard_of(sid, 3) != shard_of(sid, 4))


@pytest.mark.parametrize("spec", ["0/3", "4/3", "1-3", "a/b", "1/0"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_shard(spec)
