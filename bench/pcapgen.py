"""A fast pcap writer for tests and benchmarks: frames built with struct (no scapy), and whole blocks of
equal-size frames from numpy.

Used to generate benchmark captures and small reference captures; checksums are left zero (the
analyser, like most IDS readers, does not verify them).
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def ipv4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def ether(payload: bytes, ethertype: int = 0x0800, src: bytes = MAC_A, dst: bytes = MAC_B) -> bytes:
    return dst + src + struct.pack(">H", ethertype) + payload


def ip4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, ttl, proto, 0, ipv4(src), ipv4(dst)) + (
        payload
    )


def tcp(
    src: str, dst: str, sport: int, dport: int, flags: int, payload: bytes = b"", seq: int = 1, ack: int = 0
) -> bytes:
    header = struct.pack(">HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    return ether(ip4(src, dst, 6, header + payload))


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    return ether(ip4(src, dst, 17, struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload))


def icmp_echo(src: str, dst: str, size: int = 56, ident: int = 1, seq: int = 1) -> bytes:
    return ether(ip4(src, dst, 1, struct.pack(">BBHHH", 8, 0, 0, ident, seq) + b"\x00" * size))


def arp_reply(sender_ip: str, sender_mac: bytes, target_ip: str, target_mac: bytes) -> bytes:
    body = struct.pack(">HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, sender_mac, ipv4(sender_ip), target_mac, ipv4(target_ip))
    return ether(body, 0x0806, sender_mac, target_mac)


def dns_query(name: str, qtype: int = 1, ident: int = 1) -> bytes:
    qname = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    return struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


class PcapWriter:
    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = path.open("wb")
        self._file.write(PCAP_HEADER)
        self.packets = 0

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self._file.close()

    def write(self, ts: float, frame: bytes) -> None:
        sec = int(ts)
        self._file.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame)
        self.packets += 1

    def write_block(self, ts: npt.NDArray[np.float64], frames: npt.NDArray[np.uint8]) -> None:
        """Write n frames of equal length (rows of `frames`) with their timestamps, in one call."""
        n, length = frames.shape
        records = np.empty((n, 16 + length), np.uint8)
        header = records[:, :16].view("<u4")
        sec = ts.astype(np.int64)
        header[:, 0] = sec
        header[:, 1] = ((ts - sec) * 1e6).astype(np.int64)
        header[:, 2] = length
        header[:, 3] = length
        records[:, 16:] = frames
        self._file.write(records.tobytes())
        self.packets += n
