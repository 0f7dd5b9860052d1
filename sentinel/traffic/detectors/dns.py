"""DNS tunnelling: long, high-entropy labels and TXT/NULL volume per client and registered domain."""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sentinel.models import Observation
from sentinel.traffic.decode import Packets
from sentinel.traffic.detectors.base import Context, largest, top_keys
from sentinel.traffic.table import BoundedTable

TXT, NULL_RR = 16, 10
MAX_NAMES = 4096
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


class DnsDetector:
    def __init__(self, on_name: Callable[[int, int, str], None] | None = None) -> None:
        self.domains: BoundedTable[tuple[int, str], DomainUse] = BoundedTable(DomainUse)
        self.on_name = on_name

    def feed(self, p: Packets) -> None:
        idx = np.flatnonzero(p.udp & (p.dport == 53) & (p.plen > 0))
        for i in idx.tolist():
            parsed = parse_query(p.payload(i, 512))
            if parsed is None:
                continue
            name, qtype = parsed
            client, resolver = int(p.src[i]), int(p.dst[i])
            labels = name.split(".")
            domain = base_domain(labels)
            use = self.domains.get((client, domain))
            if use is None:
                continue
            use.queries += 1
            use.txt_null += qtype in (TXT, NULL_RR)
            if name not in use.names:
                use.distinct += 1
                if len(use.names) < MAX_NAMES:
                    use.names.add(name)
                sub = labels[: -len(domain.split("."))]
                if sub:
                    longest = max(sub, key=len)
                    use.max_label = max(use.max_label, len(longest))
                    use.max_entropy = max(use.max_entropy, entropy(longest))
            if len(use.resolvers) < 16:
                use.resolvers.add(resolver)
            if self.on_name is not None:
                self.on_name(client, resolver, name)

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
        return largest(out)
