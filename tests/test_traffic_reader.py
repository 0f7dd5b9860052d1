"""The capture reader and header decoder: formats, link types, agreement with scapy, and hostile input."""

from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, CookedLinux, Ether
from scapy.utils import PcapNgWriter, PcapWriter, rdpcap

from bench.pcapgen import PcapWriter as FastWriter
from bench.pcapgen import tcp
from sentinel.registry.models import Registry
from sentinel.registry.scope import Scope
from sentinel.traffic.addresses import AddressBook
from sentinel.traffic.analyze import analyze_file
from sentinel.traffic.capture import CaptureError, CaptureReader
from sentinel.traffic.decode import decode
from sentinel.traffic.intel import ThreatIntel

FIXTURES = Path(__file__).resolve().parents[1] / "rules" / "tests" / "traffic"
EMPTY = Registry(scope=Scope(), systems=())


def packets_of(path: Path) -> list[dict[str, object]]:
    """Decoded fields per packet, as plain values."""
    book = AddressBook(EMPTY)
    out = []
    for batch in CaptureReader(path).batches():
        p = decode(batch, book)
        for i in range(len(p)):
            out.append(
                {
                    "ts": round(float(p.ts[i]), 6),
                    "src": book.text(int(p.src[i])),
                    "dst": book.text(int(p.dst[i])),
                    "tcp": bool(p.tcp[i]),
                    "udp": bool(p.udp[i]),
                    "icmp": bool(p.icmp[i]),
                    "sport": int(p.sport[i]),
                    "dport": int(p.dport[i]),
                    "flags": int(p.flags[i]),
                    "payload": p.payload(i),
                }
            )
    return out


def scapy_view(pkt: Any) -> dict[str, object]:
    layer = pkt.getlayer(IP) or pkt.getlayer(IPv6)
    l4 = pkt.getlayer(TCP) or pkt.getlayer(UDP)
    return {
        "src": layer.src if layer is not None else None,
        "dst": layer.dst if layer is not None else None,
        "tcp": TCP in pkt,  # type: ignore[operator]
        "udp": UDP in pkt,  # type: ignore[operator]
        "sport": l4.sport if l4 is not None else 0,
        "dport": l4.dport if l4 is not None else 0,
        "flags": int(pkt[TCP].flags) if TCP in pkt else 0,  # type: ignore[operator,index]
        "payload": bytes(l4.payload) if l4 is not None else b"",
    }


@pytest.mark.parametrize("name", ["normal.pcap", "portscan_syn.pcap", "http_basic.pcap", "dns_tunnel.pcap"])
def test_decoder_agrees_with_scapy_on_real_captures(name: str) -> None:
    ours = packets_of(FIXTURES / name)
    theirs = rdpcap(str(FIXTURES / name))
    assert len(ours) == len(theirs) > 0
    for mine, pkt in zip(ours, theirs, strict=True):
        expected = scapy_view(pkt)
        if expected["src"] is None:
            continue
        assert {k: mine[k] for k in expected} == expected


def _mixed() -> list[object]:
    macs = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}  # explicit: no route or ARP lookups
    return [
        Ether(**macs) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="S"),
        Ether(**macs) / IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=22, flags="SA"),
        Ether(**macs) / IP(src="10.0.0.1", dst="10.0.0.3") / UDP(sport=5353, dport=53) / (b"x" * 20),
        Ether(**macs) / IP(src="10.0.0.1", dst="10.0.0.4") / ICMP(),
        Ether(**macs)
        / ARP(op=2, hwdst="02:00:00:00:00:01", psrc="10.0.0.9", hwsrc="02:00:00:00:00:09", pdst="10.0.0.1"),
    ]


def test_pcapng_and_gzip_read_like_pcap(tmp_path: Path) -> None:
    frames = _mixed()
    for i, pkt in enumerate(frames):
        pkt.time = 1_700_000_000 + i / 10  # type: ignore[attr-defined]
    PcapWriter(str(tmp_path / "a.pcap")).write(frames)
    PcapNgWriter(str(tmp_path / "a.pcapng")).write(frames)
    (tmp_path / "a.pcap.gz").write_bytes(gzip.compress((tmp_path / "a.pcap").read_bytes()))
    plain = packets_of(tmp_path / "a.pcap")
    assert packets_of(tmp_path / "a.pcapng") == plain
    assert packets_of(tmp_path / "a.pcap.gz") == plain
    assert [p["src"] for p in plain[:2]] == ["10.0.0.1", "fd00::1"]
    assert plain[1]["flags"] == 0x12 and plain[2]["dport"] == 53 and plain[3]["icmp"]


@pytest.mark.parametrize(("linktype", "wrap"), [(101, lambda p: p[IP]), (113, lambda p: CookedLinux() / p[IP])])
def test_other_link_types(tmp_path: Path, linktype: int, wrap: object) -> None:
    pkt = (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="10.1.1.1", dst="10.1.1.2")
        / TCP(sport=5, dport=443, flags="S")
    )
    PcapWriter(str(tmp_path / "l.pcap"), linktype=linktype).write([wrap(pkt)])  # type: ignore[operator]
    (decoded,) = packets_of(tmp_path / "l.pcap")
    assert (decoded["src"], decoded["dst"], decoded["dport"], decoded["flags"]) == ("10.1.1.1", "10.1.1.2", 443, 2)


def test_truncated_capture_is_read_up_to_the_cut_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    with FastWriter(path) as w:
        for port in range(1, 101):
            w.write(1_700_000_000 + port / 100, tcp("10.0.0.9", "10.0.0.5", 40000, port, 0x02))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 30])
    result = analyze_file(path, EMPTY, ThreatIntel())
    assert result.packets == 99
    assert "truncated" in result.warnings[0] and str(path) in result.warnings[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"hello world, not a capture", "not a pcap or pcapng file"),
        (
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 1 << 30, 60),
            "corrupt",
        ),
        (b"\x1f\x8b" + b"\x00" * 40, "cannot read"),
    ],
)
def test_bad_files_raise_a_clear_capture_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=message):
        analyze_file(path, EMPTY, ThreatIntel())


@functools.cache
def _valid_capture() -> bytes:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for pkt in _mixed():
        raw = bytes(pkt)  # type: ignore[call-overload]
        out += struct.pack("<IIII", 1, 0, len(raw), len(raw)) + raw
    return bytes(out)


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_captures_never_crash_or_hang(tmp_path: Path, data: st.DataObject) -> None:
    base = bytearray(_valid_capture())
    for _ in range(data.draw(st.integers(0, 12))):
        pos = data.draw(st.integers(0, len(base) - 1))
        base[pos] = data.draw(st.integers(0, 255))
    tail = data.draw(st.binary(max_size=200))
    cut = data.draw(st.integers(0, len(base)))
    path = tmp_path / "fuzz.pcap"
    path.write_bytes(bytes(base[:cut]) + tail)
    try:
        result = analyze_file(path, EMPTY, ThreatIntel())
    except CaptureError as exc:
        assert str(exc)
    else:
        assert result.packets >= 0


@settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(min_size=0, max_size=300), linktype=st.sampled_from([0, 1, 12, 101, 108, 113, 228, 229, 276]))
def test_random_frames_of_every_link_type_decode_without_error(tmp_path: Path, raw: bytes, linktype: int) -> None:
    path = tmp_path / "frames.pcap"
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    path.write_bytes(header + struct.pack("<IIII", 1, 0, len(raw), len(raw)) + raw)
    result = analyze_file(path, EMPTY, ThreatIntel())
    assert result.packets == 1


def test_vectorised_grouping_matches_python() -> None:
    from sentinel.traffic.table import group

    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, 500), rng.integers(0, 3, 500)
    g = group(a, b)
    expected: dict[tuple[int, int], int] = {}
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        expected[(x, y)] = expected.get((x, y), 0) + 1
    assert dict(zip(g.rows(), g.counts.tolist(), strict=True)) == expected
