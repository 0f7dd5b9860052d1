"""DNS tunnelling: long, high-entropy labels and TXT/NULL volume per client and registered domain."""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sentinel.models import Observation
from sentinel.traffic.decode import Packets
from sentinel.traffic.detectors.base import Context, largest, top_keys
from sentinel.traffic.table import BoundedTable

I64 = npt.NDArray[np.int64]
TXT, NULL_RR = 16, 10
MAX_NAMES = 4096
#: DNS messages are parsed up to this many bytes (the classic UDP limit).
MAX_MESSAGE = 512
SLICE = 2048
SECOND_LEVEL = {"com", "net", "org", "gov", "edu", "ac", "co"}


@dataclass(slots=True)
class DomainUse:
    queries: int = 0
    txt_null: int = 0
    names: set[str] = field(default_factory=set)
    distinct: int = 0
    max_label: int = 0
    max_entropy: float = 0.0
    resolvers: set[int] = field(default_factory=set)


def parse_query(payload: bytes) -> tuple[str, int] | None:
    """(query name, type) of a DNS query message, or None if it is not one."""
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


def base_domain(labels: list[str]) -> str:
    keep = 3 if len(labels) >= 3 and labels[-2] in SECOND_LEVEL and len(labels[-1]) == 2 else 2
    return ".".join(labels[-keep:])


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    qtype: int
    domain: str
    label: tuple[int, float] | None  # length and entropy of the longest label below the domain, if any


_UNPARSED = Question("", 0, "", None)  # marks a message not in the cache
#: Distinct questions remembered (about 200 bytes each).
MAX_CACHED = 16_384


class DnsDetector:
    def __init__(self, on_name: Callable[[int, int, str, int], None] | None = None) -> None:
        self.domains: BoundedTable[tuple[int, str], DomainUse] = BoundedTable(DomainUse)
        self.on_name = on_name
        self._questions: dict[bytes, Question | None] = {}

    def feed(self, p: Packets) -> None:
        queries = np.flatnonzero(p.udp & (p.dport == 53) & (p.plen > 0))
        for start in range(0, queries.size, SLICE):  # bounds the per-slice byte matrix
            self._slice(p, queries[start : start + SLICE])

    def _slice(self, p: Packets, idx: I64) -> None:
        # Clients repeat the same questions: parse each distinct (client, resolver, message) once,
        # in order of first appearance, and count its repeats. The message id is not part of it.
        size = np.minimum(p.plen[idx], MAX_MESSAGE)
        width = int(size.max())
        arr = np.frombuffer(p.buf, np.uint8)
        at = p.pstart[idx, None] + np.arange(width)
        rows = np.where(np.arange(width) < size[:, None], arr[np.minimum(at, arr.size - 1)], 0).astype(np.uint8)
        rows[:, :2] = 0
        meta = np.stack([p.src[idx], p.dst[idx], size], axis=1).view(np.uint8).reshape(idx.size, -1)
        keys = np.ascontiguousarray(np.hstack([rows, meta])).view(f"V{width + 24}").ravel()
        _, first, counts = np.unique(keys, return_index=True, return_counts=True)
        order = np.argsort(first, kind="stable")
        for i, n in zip(idx[first[order]].tolist(), counts[order].tolist(), strict=True):
            self._query(p, i, n)

    def _question(self, message: bytes) -> Question | None:
        """The question of a message, parsed once per distinct message (without its id): clients
        everywhere ask the same questions, so most lookups are answered from the cache."""
        key = message[2:]
        cached = self._questions.get(key, _UNPARSED)
        if cached is not _UNPARSED:
            return cached
        parsed = parse_query(message)
        question = None
        if parsed is not None:
            name, qtype = parsed
            labels = name.split(".")
            domain = base_domain(labels)
            sub = labels[: -len(domain.split("."))]
            longest = max(sub, key=len) if sub else None
            label = (len(longest), entropy(longest)) if longest is not None else None
            question = Question(name, qtype, domain, label)
        if len(self._questions) >= MAX_CACHED:
            self._questions.clear()  # hostile traffic never repeats: start over rather than grow
        self._questions[key] = question
        return question

    def _query(self, p: Packets, i: int, n: int) -> None:
        """One question asked `n` times in this batch by the same client of the same resolver."""
        q = self._question(p.payload(i, MAX_MESSAGE))
        if q is None:
            return
        name = q.name
        client, resolver = int(p.src[i]), int(p.dst[i])
        use = self.domains.get((client, q.domain))
        if use is None:
            return
        use.queries += n
        use.txt_null += n if q.qtype in (TXT, NULL_RR) else 0
        if name not in use.names:
            if len(use.names) < MAX_NAMES:
                use.names.add(name)
                use.distinct += 1
            else:  # past the cap every repeat of an unremembered name counts as new
                use.distinct += n
            if q.label is not None:
                use.max_label = max(use.max_label, q.label[0])
                use.max_entropy = max(use.max_entropy, q.label[1])
        if len(use.resolvers) < 16:
            use.resolvers.add(resolver)
        if self.on_name is not None:
            self.on_name(client, resolver, name, n)

    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        out: list[tuple[float, Observation]] = []
        for (c, domain), use in top_keys(self.domains.items(), lambda u: u.distinct + u.txt_null):
            client = book.text(c)
            data = {
                "source_ip": client,
                "destination_ip": ctx.ips(use.resolvers),
                "destination_port": 53,
                "dns.domain": domain,
                "dns.queries": use.queries,
                "dns.distinct_names": use.distinct,
                "dns.max_label_length": use.max_label,
                "dns.max_label_entropy": round(use.max_entropy, 3),
                "dns.txt_null_queries": use.txt_null,
                "dns.names_sample": sorted(use.names)[:5],
            }
            obs = ctx.observation("traffic.dns_tunnel", book.attribute(c), f"{client} -> {domain} (dns)", data)
            out.append((use.distinct + use.txt_null, obs))
        return largest(out, len(self.domains))
