"""Vectorised header decoding: link layer → IPv4/IPv6 → TCP/UDP/ICMP fields, plus ARP.

Every read is bounds-checked against the record's captured length: a truncated or garbled packet
only loses the fields it does not carry, it never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sentinel.traffic.addresses import AddressBook
from sentinel.traffic.capture import RecordBatch

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

ETH, RAW_LINKTYPES, SLL, SLL2, NULL, LOOP = 1, (101, 12, 14, 228, 229), 113, 276, 0, 108
ET_IPV4, ET_IPV6, ET_ARP = 0x0800, 0x86DD, 0x0806
TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


@dataclass(frozen=True, slots=True)
class Packets:
    """Decoded header fields of one batch; fields that do not apply are 0 (masks say which apply)."""

    buf: bytes | memoryview  # valid while the batch is being fed (see RecordBatch)
    start: I64  # where each record's bytes start in `buf` (ascending)
    end: I64  # where each record's captured bytes end in `buf`
    ts: npt.NDArray[np.float64]
    wirelen: I64
    src: I64
    dst: I64
    tcp: B
    udp: B
    icmp: B
    sport: I64
    dport: I64
    flags: I64
    icmp_type: I64
    ip_len: I64
    icmp_fragment_end: I64  # for later IPv4 fragments of ICMP: the reassembled datagram's size, else 0
    pstart: I64  # TCP/UDP payload; for ICMP the message body (the quoted packet of an error)
    plen: I64
    arp: I64  # indices of ARP packets
    arp_op: I64
    arp_mac: I64
    arp_sip: I64
    arp_tip: I64

    def __len__(self) -> int:
        return int(self.ts.size)

    def payload(self, i: int, limit: int = 4096) -> bytes:
        start = int(self.pstart[i])
        return bytes(self.buf[start : start + min(int(self.plen[i]), limit)])


class _Reader:
    """Clipped gathers from one buffer (out-of-range reads return garbage that the masks discard)."""

    def __init__(self, buf: bytes | memoryview) -> None:
        self.arr = np.frombuffer(buf, np.uint8)
        self.last = max(self.arr.size - 1, 0)

    def u8(self, idx: I64) -> I64:
        if self.arr.size == 0:
            return np.zeros(idx.size, np.int64)
        return np.take(self.arr, idx, mode="clip").astype(np.int64)

    def be16(self, idx: I64) -> I64:
        return (self.u8(idx) << 8) | self.u8(idx + 1)

    def be32(self, idx: I64) -> I64:
        return (self.be16(idx) << 16) | self.be16(idx + 2)

    def words(self, idx: I64) -> Words:
        """The 8 bytes from each index, big-endian: one gather where reading a header's fields byte by
        byte takes one per byte."""
        n = self.arr.size
        if n == 0:
            return Words(np.zeros(idx.size, np.uint64))
        if n >= 8:
            view = np.ndarray((n - 7,), "<u8", self.arr, 0, (1,))  # unaligned: every byte offset
            word: npt.NDArray[np.uint64] = view[np.minimum(idx, n - 8)].byteswap()
            late = np.flatnonzero((idx > n - 8) | (idx < 0))
        else:
            word, late = np.zeros(idx.size, np.uint64), np.arange(idx.size)
        if late.size:  # the word runs out of the buffer: its bytes there read as 0 (as in the compiled decoder)
            word[late] = 0
            for k in range(8):
                at = idx[late] + k
                inside = (at >= 0) & (at < n)
                byte = np.where(inside, self.arr[np.clip(at, 0, self.last)], 0).astype(np.uint64)
                word[late] |= byte << np.uint64(56 - 8 * k)
        return Words(word)


class Words:
    """Fields of 8-byte big-endian words: `u8(k)` is byte k, `be16(k)` the two from byte k, and so on."""

    def __init__(self, word: npt.NDArray[np.uint64]) -> None:
        self.word = word

    def _field(self, k: int, size: int) -> I64:
        shifted = self.word >> np.uint64(64 - 8 * (k + size)) if k + size < 8 else self.word
        field: I64 = (shifted & np.uint64((1 << (8 * size)) - 1)).view(np.int64)
        return field

    def u8(self, k: int) -> I64:
        return self._field(k, 1)

    def be16(self, k: int) -> I64:
        return self._field(k, 2)

    def be32(self, k: int) -> I64:
        return self._field(k, 4)


#: The header fields `decode_headers` writes, one row of its output each (the order of _speedups.c's enum).
HEADER_COLUMNS = (
    "src",
    "dst",
    "v6",
    "proto",
    "tcp",
    "udp",
    "icmp",
    "sport",
    "dport",
    "flags",
    "icmp_type",
    "ip_len",
    "icmp_fragment_end",
    "pstart",
    "plen",
    "arp",
    "l3",
)


def decode(batch: RecordBatch, book: AddressBook) -> Packets:
    r = _Reader(batch.buf)
    n = len(batch)
    cols = np.empty((len(HEADER_COLUMNS), n), np.int64)
    data, caplen = np.ascontiguousarray(batch.data), np.ascontiguousarray(batch.caplen)
    decode_headers(batch.buf, data, caplen, np.ascontiguousarray(batch.linktype), cols)
    src, dst, v6, _, tcp, udp, icmp, sport, dport, flags, icmp_type, ip_len, fragment_end, pstart, plen, arp, l3 = cols
    if v6.any():
        idx6 = np.flatnonzero(v6)
        src[idx6] = _intern_v6(r, l3[idx6] + 8, book)
        dst[idx6] = _intern_v6(r, l3[idx6] + 24, book)
    arp_at = np.flatnonzero(arp)
    a3 = l3[arp_at]
    return Packets(
        buf=batch.buf,
        start=data,
        end=data + caplen,
        ts=batch.ts,
        wirelen=batch.wirelen,
        src=src,
        dst=dst,
        tcp=tcp.astype(bool),
        udp=udp.astype(bool),
        icmp=icmp.astype(bool),
        sport=sport,
        dport=dport,
        flags=flags,
        icmp_type=icmp_type,
        ip_len=ip_len,
        icmp_fragment_end=fragment_end,
        pstart=pstart,
        plen=plen,
        arp=arp_at,
        arp_op=r.be16(a3 + 6),
        arp_mac=(r.be16(a3 + 8) << 32) | r.be32(a3 + 10),
        arp_sip=r.be32(a3 + 14),
        arp_tip=r.be32(a3 + 24),
    )


def _decode_headers_numpy(buf: bytes | memoryview, data: I64, caplen: I64, linktype: I64, out: I64) -> None:
    """`_speedups.decode_headers` in numpy (same arguments, same output), for when it is not built."""
    r = _Reader(buf)
    d, end, lt = data, data + caplen, linktype

    # Link layer: ethertype and where the network header starts.
    ethertype, l3 = _link_layer(r, d, lt)

    # IPv4: version, IHL, length, fragment, protocol and addresses from three 8-byte words
    head, mid, tail = r.words(l3), r.words(l3 + 8), r.words(l3 + 16)
    ver_ihl = head.u8(0)
    version = ver_ihl >> 4
    ihl = (ver_ihl & 15) * 4
    total = head.be16(2)
    v4 = (ethertype == ET_IPV4) & (version == 4) & (ihl >= 20) & (l3 + 20 <= end) & (total >= ihl)
    fragment_offset = (head.be16(6) & 0x1FFF) * 8
    first_fragment = fragment_offset == 0
    # IPv6 (no extension-header walk: TCP/UDP/ICMPv6 directly after the fixed header)
    v6 = (ethertype == ET_IPV6) & (version == 6) & (l3 + 40 <= end)
    proto = np.where(v4, mid.u8(1), np.where(v6, head.u8(6), -1))
    ip_len = np.where(v4, total, np.where(v6, 40 + head.be16(4), 0))
    ip_end = np.minimum(l3 + ip_len, end)
    l4 = np.where(v4, l3 + ihl, l3 + 40)
    l4_ok = (v4 & first_fragment) | v6

    ports_word, tcp_word = r.words(l4), r.words(l4 + 12)
    tcp = l4_ok & (proto == TCP) & (l4 + 20 <= end)
    doff = (tcp_word.u8(0) >> 4) * 4
    tcp &= doff >= 20
    udp = l4_ok & (proto == UDP) & (l4 + 8 <= end)
    icmp = l4_ok & (((proto == ICMP) & v4) | ((proto == ICMPV6) & v6)) & (l4 + 4 <= end)
    ports = tcp | udp
    pstart = np.where(tcp, l4 + doff, l4 + 8)

    # ARP (Ethernet/IPv4 only)
    arp = (ethertype == ET_ARP) & (l3 + 28 <= end)
    arp &= (r.be16(l3) == 1) & (r.be16(l3 + 2) == ET_IPV4) & (r.u8(l3 + 4) == 6) & (r.u8(l3 + 5) == 4)
    columns = {
        "src": np.where(v4, mid.be32(4), 0),
        "dst": np.where(v4, tail.be32(0), 0),
        "v6": v6,
        "proto": proto,
        "tcp": tcp,
        "udp": udp,
        "icmp": icmp,
        "sport": np.where(ports, ports_word.be16(0), 0),
        "dport": np.where(ports, ports_word.be16(2), 0),
        "flags": np.where(tcp, tcp_word.u8(1), 0),
        "icmp_type": np.where(icmp, ports_word.u8(0), -1),
        "ip_len": np.where(v4 | v6, ip_len, 0),
        "icmp_fragment_end": np.where(v4 & ~first_fragment & (proto == ICMP), fragment_offset + total, 0),
        "pstart": pstart,
        "plen": np.where(ports, np.maximum(ip_end - pstart, 0), 0),
        "arp": arp,
        "l3": l3,
    }
    for row, name in enumerate(HEADER_COLUMNS):
        out[row] = columns[name]


def _link_layer(r: _Reader, d: I64, lt: I64) -> tuple[I64, I64]:
    """Ethertype of each record and where its network header starts."""
    eth_type = r.words(d + 8).be16(4)
    vlan = (eth_type == 0x8100) | (eth_type == 0x88A8)
    if vlan.any():
        eth_type = np.where(vlan, r.be16(d + 16), eth_type)
        qinq = vlan & (eth_type == 0x8100)
        eth_type = np.where(qinq, r.be16(d + 20), eth_type)
        eth_l3 = d + 14 + 4 * vlan + 4 * qinq
    else:
        eth_l3 = d + 14
    if lt.size and lt[0] == ETH and (lt == ETH).all():  # the common case: all Ethernet, nothing else to read
        return eth_type, eth_l3
    version = r.u8(d) >> 4
    raw_type = np.where(version == 4, ET_IPV4, np.where(version == 6, ET_IPV6, 0))
    family = np.where(lt == NULL, r.u8(d), r.u8(d + 3))
    null_type = np.where(family == 2, ET_IPV4, np.where(np.isin(family, (24, 28, 30)), ET_IPV6, 0))
    conds = [lt == ETH, lt == SLL, lt == SLL2, np.isin(lt, RAW_LINKTYPES), (lt == NULL) | (lt == LOOP)]
    ethertype: I64 = np.select(conds, [eth_type, r.be16(d + 14), r.be16(d), raw_type, null_type], 0)
    l3: I64 = np.select(conds, [eth_l3, d + 16, d + 20, d, d + 4], d)
    return ethertype, l3


def _intern_v6(r: _Reader, start: I64, book: AddressBook) -> I64:
    raw = r.arr[np.clip(start[:, None] + np.arange(16), 0, r.last)]
    keys = np.ascontiguousarray(raw).view("V16").ravel()
    uniq, inverse = np.unique(keys, return_inverse=True)
    ids = np.array([book.intern_v6(bytes(u)) for u in uniq], np.int64)
    return ids[inverse.ravel()]


DecodeHeaders = Callable[[bytes | memoryview, I64, I64, I64, I64], None]
_compiled_decode: DecodeHeaders | None
try:  # the compiled decoder (built at install when a C compiler is there; see pyproject.toml)
    from sentinel.traffic._speedups import decode_headers as _compiled_decode
except ImportError:  # pragma: no cover - exercised where the extension is not built
    _compiled_decode = None

decode_headers: DecodeHeaders = _compiled_decode if _compiled_decode is not None else _decode_headers_numpy
