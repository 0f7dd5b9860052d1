"""One DNS parser: the passive DNS detector reads questions with the shared codec (collectors/protocols/dnsmsg.py)
that the active probe uses, through its fast path (many messages at once), which must read each message as
dnspython does, and as the detector's former hand-written parser did on broken ones."""

from __future__ import annotations

import struct
from pathlib import Path

import dns.message
import dns.name
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.collectors.protocols import dnsmsg
from sentinel.collectors.protocols.dnsmsg import parse_question, read_questions
from sentinel.registry.models import Registry
from sentinel.registry.scope import Scope
from sentinel.traffic.analyze import analyze_file
from sentinel.traffic.capture import CaptureReader
from sentinel.traffic.detectors import dns as passive
from sentinel.traffic.detectors.dns import base_domain, entropy, label_entropy, name_stats
from sentinel.traffic.intel import ThreatIntel

FIXTURES = Path(__file__).resolve().parents[1] / "rules" / "tests" / "traffic"
LABEL_BYTES = st.binary(min_size=1, max_size=63)


def former_parser(payload: bytes) -> tuple[str, int] | None:
    """The passive detector's own question parser before it used dnsmsg: the oracle for broken messages."""
    if len(payload) < 17:
        return None
    flags, qdcount = struct.unpack_from(">HH", payload, 2)
    if flags & 0x8000 or qdcount < 1:
        return None
    labels: list[str] = []
    pos = 12
    while True:
        if pos >= len(payload):
            return None
        length = payload[pos]
        if length == 0:
            pos += 1
            break
        if length > 63 or pos + 1 + length > len(payload) or len(labels) >= 127:
            return None
        labels.append(payload[pos + 1 : pos + 1 + length].decode("ascii", "replace").lower())
        pos += 1 + length
    if pos + 2 > len(payload) or not labels:
        return None
    return ".".join(labels), struct.unpack_from(">H", payload, pos)[0]


def matrix(messages: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(m) for m in messages), default=0)
    rows = np.zeros((len(messages), width), np.uint8)
    for i, m in enumerate(messages):
        rows[i, : len(m)] = np.frombuffer(m, np.uint8)
    return rows, np.array([len(m) for m in messages], np.int64)


def test_the_passive_detector_has_no_dns_parser_of_its_own() -> None:
    assert passive.read_questions is dnsmsg.read_questions
    assert not hasattr(passive, "parse_query")
    # and what it reports is what dnspython reads in the same queries
    observations = analyze_file(FIXTURES / "dns_tunnel.pcap", Registry(scope=Scope(), systems=()), ThreatIntel())
    tunnel = next(o for o in observations.observations if o.kind == "traffic.dns_tunnel")
    asked: set[str] = set()
    for batch in CaptureReader(FIXTURES / "dns_tunnel.pcap").batches():
        for start, size in zip(batch.data.tolist(), batch.caplen.tolist(), strict=True):
            payload = bytes(batch.buf[start + 42 : start + size])  # Ethernet, IPv4 without options, UDP
            if struct.unpack_from(">H", bytes(batch.buf[start + 36 : start + 38]))[0] == 53:
                asked.add(str(dns.message.from_wire(payload).question[0].name).rstrip(".").lower())
    assert tunnel.data["dns.names_sample"] and set(tunnel.data["dns.names_sample"]) <= asked


@settings(max_examples=200, deadline=None)
@given(
    labels=st.lists(st.text("abcXYZ019-_", min_size=1, max_size=63), min_size=1, max_size=8),
    rdtype=st.sampled_from(["A", "AAAA", "TXT", "NULL", "MX"]),
)
def test_the_fast_path_reads_queries_as_dnspython_does(labels: list[str], rdtype: str) -> None:
    name = dns.name.Name([label.encode() for label in labels] + [b""])
    query = dns.message.make_query(name, rdtype)
    wire = query.to_wire()
    parsed = dns.message.from_wire(wire).question[0]
    expected = (".".join(label.decode().lower() for label in parsed.name.labels if label), int(parsed.rdtype))
    assert parse_question(wire) == expected


def broken_messages() -> st.SearchStrategy[bytes]:
    header = st.builds(
        lambda ident, flags, qd: struct.pack(">HHHHHH", ident, flags, qd, 0, 0, 0),
        st.integers(0, 65535),
        st.sampled_from([0x0100, 0x0000, 0x8180, 0x8000]),
        st.sampled_from([0, 1, 2]),
    )
    label = st.one_of(LABEL_BYTES.map(lambda b: bytes([len(b)]) + b), st.binary(min_size=1, max_size=3))
    name = st.lists(label, max_size=6).map(b"".join)
    whole = st.tuples(header, name, st.sampled_from([b"\x00", b""]), st.binary(max_size=6)).map(b"".join)
    return st.one_of(whole, st.binary(max_size=40))


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(broken_messages(), min_size=1, max_size=30))
def test_many_messages_at_once_read_as_the_former_parser_read_each(messages: list[bytes]) -> None:
    rows, sizes = matrix(messages)
    q = read_questions(rows, sizes)
    for i, message in enumerate(messages):
        expected = former_parser(message)
        assert parse_question(message) == expected
        assert (q.name(i), int(q.qtype[i])) == expected if expected else not q.ok[i]


def test_the_longest_names_and_most_labels_a_query_may_have() -> None:
    deep = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x01a" * 127 + b"\x00\x00\x01\x00\x01"
    too_deep = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x01a" * 128 + b"\x00\x00\x01\x00\x01"
    pointer = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"
    assert parse_question(deep) == (".".join("a" * 127), 1) == former_parser(deep)
    assert parse_question(too_deep) is None and former_parser(too_deep) is None
    assert parse_question(pointer) is None


NAME_TEXT = st.text("abcdeXY.-_0\u00e9", min_size=1, max_size=60).filter(lambda t: t.strip("."))


@settings(max_examples=300, deadline=None)
@given(names=st.lists(NAME_TEXT, min_size=1, max_size=20))
def test_measures_of_many_names_at_once_are_base_domain_and_entropy(names: list[str]) -> None:
    """What DnsDetector measures with numpy, name by name as its Python definitions give it (floats exactly)."""
    raw = [n.lower().encode("ascii", "replace").replace(b"?", b"\xff") for n in names]
    rows, lengths = matrix(raw)
    stats = name_stats(rows, lengths)
    entropies = label_entropy(rows, stats, np.arange(len(names)))
    for i, text in enumerate(dnsmsg.name_text(r) for r in raw):
        labels = text.split(".")
        domain = base_domain(labels)
        sub = labels[: -len(domain.split("."))]
        assert text[int(stats.domain_start[i]) :] == domain
        if sub:
            longest = max(sub, key=len)
            assert (int(stats.label[i]), float(entropies[i])) == (len(longest), entropy(longest))
        else:
            assert stats.label[i] == -1
