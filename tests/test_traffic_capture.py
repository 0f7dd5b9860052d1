"""The pcap reader walks records a piece of its chunk at a time (while the piece is in the CPU's cache) and hands
them out in bounded batches: wherever the pieces, chunks and batches cut the records, it must read the same
records as a plain walk of the file, with the compiled record walk and with the Python one it falls back
to; and the pcap writer of the tests and benchmarks must not ship in the package."""

from __future__ import annotations

import importlib.util
import os
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.pcapgen import PcapWriter, tcp
from sentinel.traffic import capture
from sentinel.traffic.capture import CaptureReader


def plain_walk(data: bytes, order: str) -> list[tuple[int, int, int, bytes]]:
    """(seconds, fraction, wire length, bytes) of each whole record, one struct call at a time."""
    out, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, wire = struct.unpack_from(order + "IIII", data, pos)
        if pos + 16 + incl > len(data):
            break
        out.append((sec, frac, wire, data[pos + 16 : pos + 16 + incl]))
        pos += 16 + incl
    return out


def write_random(path: Path, order: str, count: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    header = struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    parts = [header]
    for i in range(count):
        size = int(rng.choice([0, 1, 14, 54, 60, 590, 1514, 9000, 70_000]))
        frame = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        parts.append(struct.pack(order + "IIII", 1_700_000_000 + i, i % 1_000_000, size, size + i % 3) + frame)
    data = b"".join(parts)
    path.write_bytes(data)
    return data


def read(path: Path, chunk: int) -> list[tuple[int, int, int, bytes]]:
    out = []
    reader = CaptureReader(path, chunk)
    for batch in reader.batches():
        assert len(batch) <= capture.MAX_BATCH
        for i in range(len(batch)):
            start, size = int(batch.data[i]), int(batch.caplen[i])
            ts = float(batch.ts[i])
            sec = int(ts)
            out.append((sec, round((ts - sec) * 1e6), int(batch.wirelen[i]), bytes(batch.buf[start : start + size])))
    return out


def compiled_walk() -> Callable[..., tuple[int, int]]:
    if capture._compiled_walk is None:
        if os.environ.get("CI"):
            pytest.fail("sentinel/traffic/_speedups.c is not built: `pip install -e .` compiles it (needs gcc)")
        pytest.skip("the compiled record walk is not built (pip install -e . with a C compiler)")
    return capture._compiled_walk


@pytest.fixture(params=["compiled", "python"])
def walk_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test below runs with the compiled record walk and with the Python one it falls back to."""
    monkeypatch.setattr(capture, "walk", compiled_walk() if request.param == "compiled" else capture._walk_python)
    return str(request.param)


def test_the_reader_walks_with_the_compiled_walk_when_it_is_built() -> None:
    assert capture.walk is compiled_walk()


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize(
    ("chunk", "piece", "batch"), [(1 << 20, 4096, 7), (300_000, 65_536, 1 << 17), (64 << 10, 1000, 3)]
)
def test_every_cut_of_pieces_chunks_and_batches_reads_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, walk_impl: str, order: str, chunk: int, piece: int, batch: int
) -> None:
    monkeypatch.setattr(capture, "PIECE", piece)
    monkeypatch.setattr(capture, "MAX_BATCH", batch)
    path = tmp_path / "random.pcap"
    data = write_random(path, order, 400, seed=len(order) + chunk)
    expected = plain_walk(data, order)
    assert read(path, chunk) == expected and len(expected) == 400
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 100])  # the last record is cut: read up to it, and say so
    reader = CaptureReader(cut, chunk)
    assert sum(len(b) for b in reader.batches()) == len(plain_walk(data[:-100], order)) < 400
    assert reader.truncated


def test_a_record_claiming_more_than_any_snap_length_is_corrupt_wherever_it_lies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, walk_impl: str
) -> None:
    monkeypatch.setattr(capture, "PIECE", 4096)
    path = tmp_path / "corrupt.pcap"
    data = bytearray(write_random(path, "<", 200, seed=3))
    walked = plain_walk(bytes(data), "<")
    at = 24 + sum(16 + len(r[3]) for r in walked[:150])  # the 151st record's header
    data[at + 8 : at + 12] = struct.pack("<I", capture.MAX_RECORD + 1)
    path.write_bytes(bytes(data))
    with pytest.raises(capture.CaptureError, match=f"record at byte {at} claims"):
        list(CaptureReader(path, 64 << 10).batches())


def test_the_pcap_writer_is_a_bench_helper_not_part_of_the_package(tmp_path: Path) -> None:
    assert importlib.util.find_spec("sentinel.traffic.writer") is None
    path = tmp_path / "written.pcap"
    frames = [tcp("10.0.0.1", "10.0.0.2", 40000, port, 0x02) for port in range(1, 4)]
    block = np.frombuffer(b"".join(frames), np.uint8).reshape(3, -1)
    with PcapWriter(path) as writer:
        writer.write(1_700_000_000.5, frames[0])
        writer.write_block(np.array([1_700_000_001.0, 1_700_000_002.25, 1_700_000_003.0]), block)
    records = read(path, capture.CHUNK)
    assert [r[3] for r in records] == [frames[0], *frames]
    stamps = [(1_700_000_000, 500_000), (1_700_000_001, 0), (1_700_000_002, 250_000), (1_700_000_003, 0)]
    assert [(r[0], r[1]) for r in records] == stamps


def test_the_two_walks_agree_record_for_record_on_hostile_bytes() -> None:
    """Random bytes as records (lengths anywhere, headers cut at every place): the same records, the same stop."""
    rng = np.random.default_rng(11)
    for trial in range(300):
        data = memoryview(bytearray(rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()))
        # small lengths so that the chains are long
        for at in range(0, len(data) - 12, int(rng.integers(17, 60))):
            data[at + 8 : at + 12] = struct.pack("<I", int(rng.integers(0, 40)))
        start, capacity, swap = int(rng.integers(0, 8)), int(rng.integers(1, 20)), bool(trial % 2)
        results = []
        for walk in (capture._walk_python, compiled_walk()):
            starts, headers = np.zeros(capacity, np.int64), np.zeros((capacity, 4), np.uint32)
            count, after = walk(data, start, starts, headers, swap, 30)
            results.append((count, after, starts[:count].tolist(), headers[:count].tolist()))
        assert results[0] == results[1], trial
