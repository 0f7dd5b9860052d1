"""store/sqlite.py `save_observations`: the rows it writes, byte for byte what the plain per-row code wrote.

The `data` column is `json.dumps(dict(o.data), ensure_ascii=False, default=str)` of each observation (the web
view, the exporter and `json_extract` read it), `observed_at` the UTC ISO time; the encoder made once per call
and the time made once per datetime object must not change a byte of either, whatever the values."""

from __future__ import annotations

import enum
import json
import re
import sys
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from sentinel.models import Observation, ObservationStatus, Vantage
from sentinel.store import SqliteStore

T0 = datetime(2026, 11, 1, 8, 30, 15, 123456, tzinfo=UTC)


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Frozen(Mapping[str, Any]):
    """A read-only mapping that is no dict (what a collector may hand over)."""

    def __init__(self, **values: Any) -> None:
        self._values = values

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


AWKWARD: dict[str, Any] = {
    "text": "河西区 政务服务中心 — naïve café ☕ 🛰️",
    "escapes": 'quote " backslash \\ newline \n tab \t nul \x00 bell \x07 del \x7f ls \u2028 ps \u2029',
    "cert.not_after": datetime(2027, 1, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=8))),
    "naive": datetime(2026, 3, 2, 8, 0),
    "day": date(2026, 3, 2),
    "nested": [[1, 2.5, None], {"deep": [True, False, {"k": "值"}]}, (3, "tuple")],
    "floats": [0.1, 1e300, -0.0, 1.0, 123456789.123456789, 5e-324, float("inf"), float("-inf"), float("nan")],
    "ints": [0, -1, 2**63, -(2**80), True, False],
    "none": None,
    "yes": True,
    "no": False,
    "empty": {"list": [], "dict": {}, "text": ""},
    "keys": {7: "int", 2.5: "float", True: "bool", None: "none", "": "blank"},
    "decimal": Decimal("1.10"),
    "path": Path("/var/log/sentinel.log"),
    "bytes": b"\x00\xff",
    "frozen": frozenset({42}),
    "enum": Colour.RED,
    "int_enum": Level.HIGH,
    "status": ObservationStatus.ERROR,
}


def _obs(data: Mapping[str, Any], target: str = "10.20.1.5", at: datetime = T0, **more: Any) -> Observation:
    return Observation(
        kind="traffic.portscan",
        system_id="portal",
        target=target,
        observed_at=at,
        probe="pcap",
        data=data,
        **more,
    )


def _reference(o: Observation) -> tuple[object, ...]:
    """The row as save_observations wrote it before it made its encoder once per call."""
    return (
        o.kind,
        o.system_id,
        o.target,
        o.observed_at.astimezone(UTC).isoformat(),
        o.probe,
        o.status.value,
        o.error,
        json.dumps(dict(o.data), ensure_ascii=False, default=str),
        o.site or "",
        o.vantage.value if o.vantage is not None else "",
    )


def _stored(store: SqliteStore) -> list[tuple[object, ...]]:
    return [
        tuple(r)
        for r in store.connection.execute(
            "SELECT kind, system_id, target, observed_at, probe, status, error, data, site, vantage"
            " FROM observations_latest ORDER BY rowid"
        )
    ]


def _awkward_batch() -> list[Observation]:
    shared = datetime(2026, 11, 1, 16, 30, tzinfo=timezone(timedelta(hours=8)))  # one object, many observations
    return [
        _obs(AWKWARD, "a", site="hexi-district", vantage=Vantage.EXTRANET),
        _obs(MappingProxyType(dict(AWKWARD)), "b"),  # a Mapping that is no dict: copied as before
        _obs(OrderedDict(reversed(list(AWKWARD.items()))), "c"),  # a dict subclass: copied as before
        _obs(Counter(a=3, b=1), "d"),
        _obs(Frozen(x=1, y=["z"]), "e"),
        _obs({}, "f", status=ObservationStatus.ERROR, error="timeout: 连接超时"),
        *(_obs({"n": i}, f"shared-{i}", at=shared) for i in range(5)),
        _obs({"n": 5}, "equal-not-same", at=shared.astimezone(UTC)),  # the same instant, another object
        _obs({"n": 6}, "local", at=datetime(2026, 11, 1, 8, 30)),  # naive: read as local time, as before
        _obs({"k": "dup-1"}, "a"),  # the same key again: the later one wins
    ]


def test_saved_rows_are_byte_identical_to_json_dumps_of_each_observation(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    batch = _awkward_batch()
    store.save_observations(batch)
    expected = {r[:3]: r for r in map(_reference, batch)}  # INSERT OR REPLACE: the last row of a key stays
    stored = _stored(store)
    assert sorted(stored, key=str) == sorted(expected.values(), key=str)
    assert all(type(r[7]) is str for r in stored)  # the same TEXT values, not bytes
    rows = {r[2]: r for r in stored}
    assert json.loads(str(rows["b"][7]))["text"] == AWKWARD["text"]  # kept as text, not \u escapes
    assert rows["shared-0"][3] == rows["equal-not-same"][3] == "2026-11-01T08:30:00+00:00"
    store.close()


def test_rows_without_the_c_encoder_are_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # without the _json accelerator save_observations falls back to json's pure-Python encoder (as json.dumps does)
    batch = _awkward_batch()
    with_c = SqliteStore(tmp_path / "c.db")
    with_c.save_observations(batch)
    monkeypatch.setitem(sys.modules, "_json", None)  # `from _json import ...` now raises ImportError
    without = SqliteStore(tmp_path / "py.db")
    without.save_observations(batch)
    assert _stored(without) == _stored(with_c)
    with_c.close()
    without.close()


def test_data_that_json_dumps_refuses_is_refused_alike_and_nothing_is_written(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = [loop]
    bad_key: dict[Any, Any] = {("a", "b"): 1}
    for data in (loop, bad_key):
        with pytest.raises((ValueError, TypeError)) as expected:
            json.dumps(dict(data), ensure_ascii=False, default=str)
        with pytest.raises(type(expected.value), match=re.escape(str(expected.value))):
            store.save_observations([_obs({"fine": 1}, "first"), _obs(data, "bad")])
        assert _stored(store) == []  # the whole batch is rolled back
    # a later call starts clean (no container of the failed row is still marked as being encoded)
    fine = [_obs({"same": [1, 2]}, "x"), _obs({"same": [1, 2]}, "y")]
    store.save_observations(fine)
    assert _stored(store) == [_reference(o) for o in fine]
    store.close()


def test_many_observations_sharing_one_datetime_keep_their_own_times(tmp_path: Path) -> None:
    # the time text is made once per datetime *object*; distinct objects with equal fields are still each converted
    store = SqliteStore(tmp_path / "s.db")
    eight = timezone(timedelta(hours=8))
    shared = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    batch = [
        _obs({"i": i}, f"t{i}", at=shared if i % 2 else datetime(2026, 11, 1, 8, 0, tzinfo=eight)) for i in range(6)
    ]
    store.save_observations(batch)
    assert [r[3] for r in _stored(store)] == [
        "2026-11-01T00:00:00+00:00" if i % 2 == 0 else "2026-11-01T08:00:00+00:00" for i in range(6)
    ]
    store.close()
