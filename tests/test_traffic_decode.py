"""decode.py: the compiled header decoder (_speedups.decode_headers) and its numpy twin give the same columns,
field for field, on real captures, on frames of every link type and layer the decoder knows, and on random
bytes cut at random places; `decode` uses the compiled one where it is built."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, UDPerror
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, CookedLinux, Dot1AD, Dot1Q, Ether, Loopback

from bench import pcap_mixes
from sentinel.traffic import decode as decoder
from sentinel.traffic.capture import CaptureReader, RecordBatch

FIXTURES = Path(__file__).resolve().parents[1] / "rules" / "tests" / "traffic"


def compiled() -> decoder.DecodeHeaders:
    if decoder._compiled_decode is None:
        if os.environ.get("CI"):
            pytest.fail("sentinel/traffic/_speedups.c is not built: `pip install -e .` compiles it (needs gcc)")
        pytest.skip("the compiled decoder is not built (pip install -e . with a C compiler)")
    return decoder._compiled_decode


def columns(
    decode: decoder.DecodeHeaders, buf: bytes | memoryview, data: np.ndarray, caplen: np.ndarray, lt: np.ndarray
) -> dict[str, list[int]]:
    out = np.full((len(decoder.HEADER_COLUMNS), data.size), -7, np.int64)
    decode(buf, data, caplen, lt, out)
    return {name: out[row].tolist() for row, name in enumerate(decoder.HEADER_COLUMNS)}


def assert_same(buf: bytes | memoryview, data: np.ndarray, caplen: np.ndarray, lt: np.ndarray) -> None:
    fast = columns(compiled(), buf, data, caplen, lt)
    slow = columns(decoder._decode_headers_numpy, buf, data, caplen, lt)
    for name in decoder.HEADER_COLUMNS:
        if fast[name] != slow[name]:
            i = next(k for k, (a, b) in enumerate(zip(fast[name], slow[name], strict=True)) if a != b)
            raise AssertionError(f"{name} differs at record {i}: compiled {fast[name][i]}, numpy {slow[name][i]}")


def batch_of(
    frames: list[tuple[bytes, int]], gap: bytes = b"\xaa" * 16
) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """Frames laid out as a reader would hand them over: each after a 16-byte gap (a record header)."""
    buf, data, caplen, lt = b"", [], [], []
    for frame, linktype in frames:
        buf += gap
        data.append(len(buf))
        caplen.append(len(frame))
        lt.append(linktype)
        buf += frame
    return buf, np.array(data, np.int64), np.array(caplen, np.int64), np.array(lt, np.int64)


def test_decode_uses_the_compiled_decoder_when_it_is_built() -> None:
    assert decoder.decode_headers is compiled()


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir() if ".pcap" in p.name))
def test_same_columns_on_every_reference_capture(name: str) -> None:
    batches = list(CaptureReader(FIXTURES / name).batches())
    assert batches
    for b in batches:
        assert_same(b.buf, b.data, np.ascontiguousarray(b.caplen), b.linktype)


def test_same_columns_on_generated_mixes(tmp_path: Path) -> None:
    for mix in ("mixed", "hostile"):
        path = tmp_path / f"{mix}.pcap"
        pcap_mixes.generate(path, 30_000, mix)
        for b in CaptureReader(path).batches():
            assert_same(b.buf, b.data, np.ascontiguousarray(b.caplen), b.linktype)


def layered_frames() -> list[tuple[bytes, int]]:
    """Every layer the decoder reads, over every link type it knows, whole and cut short at each length."""
    v4 = IP(src="10.1.2.3", dst="10.9.8.7")
    v6 = IPv6(src="2001:db8::1", dst="2001:db8::2")
    payloads = [
        v4 / TCP(sport=40000, dport=443, flags="S", options=[("MSS", 1460)]) / (b"x" * 5),
        v4 / UDP(sport=5353, dport=53) / (b"\x12\x34" * 10),
        v4 / ICMP(type=8) / b"ping",
        v4 / ICMP(type=3, code=3) / IP(src="10.9.8.7", dst="10.1.2.3") / UDPerror(sport=1, dport=161),
        IP(src="10.1.2.3", dst="10.9.8.7", frag=100, proto=1) / (b"\x00" * 40),  # a later ICMP fragment
        IP(src="10.1.2.3", dst="10.9.8.7", ihl=3) / (b"\x00" * 30),  # bad header length
        v6 / TCP(sport=1, dport=22, flags="PA") / b"SSH-2.0",
        v6 / UDP(sport=1, dport=53),
        v6 / ICMPv6EchoRequest(),
    ]
    out: list[tuple[bytes, int]] = []
    for l3 in payloads:
        raw = bytes(l3)
        link = [
            (bytes(Ether() / l3), 1),
            (bytes(Ether() / Dot1Q(vlan=7) / l3), 1),
            (bytes(Ether() / Dot1AD(vlan=7) / Dot1Q(vlan=8) / l3), 1),
            (bytes(CookedLinux(proto=0x86DD if l3.version == 6 else 0x0800) / l3), 113),
            (bytes(Loopback(type=2 if l3.version == 4 else 30) / l3), 0),
            (b"\x00\x00\x00" + bytes([2 if l3.version == 4 else 24]) + raw, 108),
            (raw, 101),
            (raw, 12),
            ((0x86DD if l3.version == 6 else 0x0800).to_bytes(2, "big") + b"\x00" * 18 + raw, 276),
        ]
        for frame, linktype in link:
            out += [(frame[:cut], linktype) for cut in range(0, len(frame) + 1, 3)] + [(frame, linktype)]
    arp = bytes(Ether() / ARP(op=1, psrc="10.0.0.1", pdst="10.0.0.2"))
    out += [(arp[:cut], 1) for cut in range(0, len(arp) + 1)] + [(arp, 1), (arp, 999)]  # 999: unknown link type
    return out


def test_same_columns_on_every_layer_and_link_type_cut_at_every_length() -> None:
    frames = layered_frames()
    buf, data, caplen, lt = batch_of(frames)
    assert_same(buf, data, caplen, lt)
    # the last frame of the buffer, so that reads run past its end, for each frame in turn
    for frame, linktype in frames[::7]:
        assert_same(*batch_of([(frame, linktype)], gap=b""))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=600), st.data())
def test_same_columns_on_random_bytes_and_records(raw: bytes, data: st.DataObject) -> None:
    count = data.draw(st.integers(0, 12))
    starts = np.array([data.draw(st.integers(0, max(len(raw), 1))) for _ in range(count)], np.int64)
    caplen = np.array([data.draw(st.integers(0, max(len(raw) - int(s), 0))) for s in starts], np.int64)
    lt = np.array(
        [data.draw(st.sampled_from([0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 7])) for _ in starts], np.int64
    )
    assert_same(raw, starts, caplen, lt)


PACKET_FIELDS = ("src", "dst", "tcp", "udp", "icmp", "sport", "dport", "flags", "icmp_type", "pstart", "plen", "ip_len")
PACKET_FIELDS += ("icmp_fragment_end", "arp", "arp_op", "arp_mac", "arp_sip", "arp_tip", "end")


def test_decode_builds_the_same_packets_with_either_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    from sentinel.registry.models import Registry
    from sentinel.registry.scope import Scope
    from sentinel.traffic.addresses import AddressBook

    frames = layered_frames()
    buf, data, caplen, lt = batch_of(frames)
    batch = RecordBatch(buf, data, caplen, caplen, np.arange(data.size, dtype=np.float64), lt)
    seen = []
    for impl in (compiled(), decoder._decode_headers_numpy):
        monkeypatch.setattr(decoder, "decode_headers", impl)
        book = AddressBook(Registry(scope=Scope(), systems=()))
        p = decoder.decode(batch, book)
        seen.append({name: getattr(p, name).tolist() for name in PACKET_FIELDS})
    assert seen[0] == seen[1]
    assert any(seen[0]["tcp"]) and any(seen[0]["udp"]) and any(seen[0]["icmp"]) and seen[0]["arp"]
