"""Bulk pcap / pcapng reader (gzip too): yields batches of record offsets, never per-packet objects.

The file is read in fixed-size chunks, so memory is bounded by the chunk, not by the file. A plain
Python loop walks the record headers (the only sequential part); everything else is numpy.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

CHUNK = 8 * 1024 * 1024
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
    """Records of one chunk: `buf` holds them, `data` is where each packet's bytes start."""

    buf: bytes
    data: I64
    caplen: I64
    wirelen: I64
    ts: npt.NDArray[np.float64]
    linktype: I64

    def __len__(self) -> int:
        return int(self.data.size)


def gather_u32(arr: npt.NDArray[np.uint8], idx: I64, order: str) -> I64:
    """Unaligned 32-bit reads at each index (indices must leave 4 bytes in `arr`)."""
    if idx.size == 0:
        return np.zeros(0, np.int64)
    raw = arr[idx[:, None] + np.arange(4)]
    values: I64 = raw.view(order + "u4").ravel().astype(np.int64)
    return values


def open_capture(path: Path) -> BinaryIO:
    raw = path.open("rb")
    head = raw.read(2)
    raw.seek(0)
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


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
        incl_at = struct.Struct(order + "I").unpack_from
        carry = b""
        offset = 24  # file offset of carry[0], for error messages
        while True:
            chunk = f.read(self.chunk)
            buf = carry + chunk if carry else chunk
            n = len(buf)
            positions: list[int] = []
            append = positions.append
            pos = 0
            while pos + 16 <= n:
                incl = incl_at(buf, pos + 8)[0]
                if incl > MAX_RECORD:
                    raise CaptureError(f"record at byte {offset + pos} claims {incl} bytes: corrupt file")
                nxt = pos + 16 + incl
                if nxt > n:
                    break
                append(pos)
                pos = nxt
            if positions:
                hdr = np.array(positions, np.int64)
                arr = np.frombuffer(buf, np.uint8)
                sec = gather_u32(arr, hdr, order)
                frac = gather_u32(arr, hdr + 4, order)
                caplen = gather_u32(arr, hdr + 8, order)
                self.records += hdr.size
                yield RecordBatch(
                    buf,
                    hdr + 16,
                    caplen,
                    gather_u32(arr, hdr + 12, order),
                    sec + frac * resolution,
                    np.full(hdr.size, linktype, np.int64),
                )
            carry = buf[pos:]
            offset += pos
            if not chunk:
                self.truncated = bool(carry)
                return

    # -- pcapng ---------------------------------------------------------------------------------
    def _pcapng(self, f: BinaryIO, magic: bytes) -> Iterator[RecordBatch]:
        carry = magic
        offset = 0
        order = "<"
        linktypes: list[int] = []
        resolutions: list[float] = []
        while True:
            chunk = f.read(self.chunk)
            buf = carry + chunk
            n = len(buf)
            pos = 0
            data: list[int] = []
            caps: list[int] = []
            wires: list[int] = []
            stamps: list[int] = []
            ifaces: list[int] = []
            while pos + 12 <= n:
                if buf[pos : pos + 4] == SHB_BYTES:  # the same in both byte orders
                    bom = buf[pos + 8 : pos + 12]
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
            carry = buf[pos:]
            offset += pos
            if not chunk:
                self.truncated = bool(carry)
                return


def _if_tsresol(buf: bytes, pos: int, end: int, order: str) -> float:
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
