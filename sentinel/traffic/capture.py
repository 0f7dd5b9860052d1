"""Bulk pcap / pcapng reader (gzip too): yields batches of record offsets, never per-packet objects.

The file is read in fixed-size chunks, so memory is bounded by the chunk, not by the file. A plain
Python loop walks the record headers (the only sequential part); everything else is numpy.
"""

from __future__ import annotations

import gzip
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

#: Bytes read at a time. Large, because the detectors' numpy work has a fixed cost per batch; the
#: chunk's records are handed out in even batches of at most MAX_BATCH records, so that small packets
#: do not make a batch (and the detectors' per-packet temporaries) huge.
CHUNK = 32 * 1024 * 1024
#: Read (and walked) at a time, small enough to stay in the CPU's cache.
PIECE = 2 * 1024 * 1024
MAX_BATCH = 1 << 16
#: Larger than any real snap length; a record claiming more means the file is corrupt.
MAX_RECORD = 1 << 20
PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = 0x0A0D0D0A
GZIP_MAGIC = b"\x1f\x8b"
SHB_BYTES = b"\n\r\r\n"

I64 = npt.NDArray[np.int64]


class CaptureError(Exception):
    """The file is not a capture, or is corrupt beyond the point of reading on."""


@dataclass(frozen=True, slots=True)
class RecordBatch:
    """Records of one chunk: `buf` holds them, `data` is where each packet's bytes start.

    `buf` may be a view of the reader's reused buffer: it is valid until the next batch is read.
    """

    buf: bytes | memoryview
    data: I64
    caplen: I64
    wirelen: I64
    ts: npt.NDArray[np.float64]
    linktype: I64

    def __len__(self) -> int:
        return int(self.data.size)


def open_capture(path: Path) -> BinaryIO:
    raw = path.open("rb")
    head = raw.read(2)
    raw.seek(0)
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


class _Window:
    """One read buffer reused for every chunk: the unread tail of the last chunk, then the next chunk.

    Reading into the same memory avoids allocating (and page-faulting) two fresh chunk-sized
    buffers per chunk, which costs more than the record walk itself.
    """

    def __init__(self, f: BinaryIO, chunk: int, head: bytes) -> None:
        self.f, self.chunk = f, chunk
        # room for the chunk and for what is carried over: an incomplete record, or for pcap the rest of
        # the last piece when the batch filled up before the walk reached its end
        self.store = bytearray(chunk + PIECE + MAX_RECORD + 1024 + len(head))
        self.store[: len(head)] = head
        self.kept = len(head)  # bytes at the front of `store` carried over from the last chunk

    def fill(self) -> tuple[memoryview, int]:
        """The carried-over bytes plus the next chunk, and how many bytes were read (0 at the end)."""
        got = self.f.readinto(memoryview(self.store)[self.kept : self.kept + self.chunk])  # type: ignore[attr-defined]
        return memoryview(self.store)[: self.kept + got], got

    def keep(self, buf: memoryview, pos: int) -> None:
        """Carry buf[pos:] (an incomplete record) to the front for the next fill."""
        tail = len(buf) - pos
        self.store[:tail] = buf[pos:]
        self.kept = tail


class CaptureReader:
    """Iterate `RecordBatch`es of a pcap or pcapng file; `truncated` tells if the last record was cut."""

    def __init__(self, path: Path, chunk: int = CHUNK) -> None:
        self.path = path
        self.chunk = chunk
        self.truncated = False
        self.records = 0

    def batches(self) -> Iterator[RecordBatch]:
        try:
            with open_capture(self.path) as f:
                head = f.read(4)
                if len(head) < 4:
                    raise CaptureError("empty or too short to be a capture")
                if head in PCAP_MAGICS:
                    yield from self._pcap(f, head)
                elif struct.unpack("<I", head)[0] == PCAPNG_SHB:
                    yield from self._pcapng(f, head)
                else:
                    raise CaptureError(f"not a pcap or pcapng file (starts with {head.hex()})")
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise CaptureError(f"cannot read: {exc}") from None

    # -- classic pcap ---------------------------------------------------------------------------
    def _pcap(self, f: BinaryIO, magic: bytes) -> Iterator[RecordBatch]:
        order, resolution = PCAP_MAGICS[magic]
        rest = f.read(20)
        if len(rest) < 20:
            raise CaptureError("pcap file header is truncated")
        linktype = struct.unpack(order + "I", rest[16:20])[0] & 0x0FFFFFFF
        swap = order != ("<" if sys.byteorder == "little" else ">")
        window = _Window(f, self.chunk, b"")
        offset = 24  # file offset of store[0], for error messages
        starts = np.empty(MAX_BATCH, np.int64)  # filled by the walk; copied out per batch
        headers = np.empty((MAX_BATCH, 4), np.uint32)
        while True:
            # The chunk is read a piece at a time and each piece walked while it is still in the CPU's
            # cache: following the length fields (the only sequential step) of a cold 32 MB buffer is a
            # cache miss per record.
            store, limit = memoryview(window.store), window.kept + self.chunk
            end, resume, eof, count = window.kept, 0, False, 0
            while end < limit and count < MAX_BATCH:  # small packets: fewer bytes, not more records
                got = f.readinto(store[end : min(end + PIECE, limit)])  # type: ignore[attr-defined]
                end += got
                walked, resume = walk(store[:end], resume, starts[count:], headers[count:], swap, MAX_RECORD)
                count += walked
                if walked and headers[count - 1, 2] > MAX_RECORD:
                    raise CaptureError(
                        f"record at byte {offset + int(starts[count - 1])} claims {int(headers[count - 1, 2])} "
                        "bytes: corrupt file"
                    )
                if not got:  # the end of the file; when the batch filled up first, the next round walks on
                    eof = count < MAX_BATCH
                    break
            if resume > end:  # the last record's header is here but not all of its bytes
                count -= 1
                resume = int(starts[count])
            buf = store[:end]
            if count:
                self.records += count
                yield _batch(buf, starts[:count].copy(), headers[:count], resolution, linktype)
            offset += resume
            if eof:
                self.truncated = resume < end
                return
            window.keep(buf, resume)

    # -- pcapng ---------------------------------------------------------------------------------
    def _pcapng(self, f: BinaryIO, magic: bytes) -> Iterator[RecordBatch]:
        window = _Window(f, self.chunk, magic)
        offset = 0
        order = "<"
        linktypes: list[int] = []
        resolutions: list[float] = []
        while True:
            buf, got = window.fill()
            n = len(buf)
            pos = 0
            data: list[int] = []
            caps: list[int] = []
            wires: list[int] = []
            stamps: list[int] = []
            ifaces: list[int] = []
            while pos + 12 <= n:
                if buf[pos : pos + 4] == SHB_BYTES:  # the same in both byte orders
                    bom = bytes(buf[pos + 8 : pos + 12])
                    if len(bom) < 4:
                        break
                    order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">" if bom == b"\x1a\x2b\x3c\x4d" else ""
                    if not order:
                        raise CaptureError(f"bad pcapng section header at byte {offset + pos}")
                    linktypes, resolutions = [], []
                btype, blen = struct.unpack_from(order + "II", buf, pos)
                if blen < 12 or blen % 4 or blen > MAX_RECORD + 64:
                    raise CaptureError(f"pcapng block at byte {offset + pos} has bad length {blen}: corrupt file")
                if pos + blen > n:
                    break
                if btype == 6 and blen >= 32:
                    iface, hi, lo, cap, wire = struct.unpack_from(order + "IIIII", buf, pos + 8)
                    if iface < len(linktypes):
                        data.append(pos + 28)
                        caps.append(min(cap, blen - 32))
                        wires.append(wire)
                        stamps.append(hi << 32 | lo)
                        ifaces.append(iface)
                elif btype == 3 and blen >= 16 and linktypes:
                    (wire,) = struct.unpack_from(order + "I", buf, pos + 8)
                    data.append(pos + 12)
                    caps.append(min(wire, blen - 16))
                    wires.append(wire)
                    stamps.append(0)
                    ifaces.append(0)
                elif btype == 1 and blen >= 20:
                    (lt,) = struct.unpack_from(order + "H", buf, pos + 8)
                    linktypes.append(lt)
                    resolutions.append(_if_tsresol(buf, pos + 16, pos + blen - 4, order))
                pos += blen
            if data:
                iface_arr = np.array(ifaces, np.int64)
                lt_arr = np.array(linktypes, np.int64)[iface_arr]
                res_arr = np.array(resolutions, np.float64)[iface_arr]
                self.records += len(data)
                yield RecordBatch(
                    buf,
                    np.array(data, np.int64),
                    np.array(caps, np.int64),
                    np.array(wires, np.int64),
                    np.array(stamps, np.float64) * res_arr,
                    lt_arr,
                )
            offset += pos
            if not got:
                self.truncated = pos < n
                return
            window.keep(buf, pos)


def _batch(
    buf: bytes | memoryview, starts: I64, headers: npt.NDArray[np.uint32], resolution: float, linktype: int
) -> RecordBatch:
    """A batch of classic pcap records from their offsets in `buf` and their header words."""
    fields = headers.astype(np.int64)
    return RecordBatch(
        buf,
        starts + 16,
        fields[:, 2],
        fields[:, 3],
        fields[:, 0] + fields[:, 1] * resolution,
        np.full(starts.size, linktype, np.int64),
    )


def _walk_python(
    buf: memoryview, start: int, starts: I64, headers: npt.NDArray[np.uint32], swap: bool, max_record: int
) -> tuple[int, int]:
    """The record walk of `_speedups.walk` (same arguments, same result), for when it is not built.

    A loop per record is unavoidable (each offset depends on the one before); indexing uint32 views
    of the buffer at its four alignments costs less per step than struct.unpack_from."""
    capacity = min(starts.size, headers.shape[0])
    found: list[int] = []
    append = found.append
    at = start + 8  # the length field of the record at `start`
    n = len(buf)
    if swap:
        length_at = struct.Struct(">I" if sys.byteorder == "little" else "<I").unpack_from
        views = None
    else:
        views = tuple(buf[k : k + (n - k) // 4 * 4].cast("I") for k in range(4))
    while len(found) < capacity and at + 8 <= n:
        length = length_at(buf, at)[0] if views is None else views[at & 3][at >> 2]
        append(at - 8)
        at += 16 + length
        if length > max_record:
            break
    count = len(found)
    if count:
        where = np.array(found, np.int64)
        starts[:count] = where
        words = np.frombuffer(buf, np.uint8)[where[:, None] + np.arange(16)].view(np.uint32).reshape(-1, 4)
        headers[:count] = words.byteswap() if swap else words
    return count, at - 8


Walk = Callable[[memoryview, int, I64, npt.NDArray[np.uint32], bool, int], tuple[int, int]]
_compiled_walk: Walk | None
try:  # the compiled walk (built at install when a C compiler is there; see pyproject.toml)
    from sentinel.traffic._speedups import walk as _compiled_walk
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _compiled_walk = None

COMPILED_WALK = _compiled_walk is not None
walk: Walk = _compiled_walk if _compiled_walk is not None else _walk_python


def _if_tsresol(buf: bytes | memoryview, pos: int, end: int, order: str) -> float:
    """The interface's timestamp unit (option if_tsresol, code 9), default microseconds."""
    while pos + 4 <= end:
        code, length = struct.unpack_from(order + "HH", buf, pos)
        if code == 0:
            break
        if code == 9 and length >= 1 and pos + 5 <= end:
            value = buf[pos + 4]
            exponent = value & 0x7F
            if exponent > 60:
                break
            return float(2.0**-exponent if value & 0x80 else 10.0**-exponent)
        pos += 4 + (length + 3) // 4 * 4
    return 1e-6
