"""DNS tunnelling: long, high-entropy labels and TXT/NULL volume per client and registered domain.

The questions are read with the shared DNS parser (`dnsmsg.read_questions`), for every distinct query
message of a batch at once; what is measured per name (its registered domain, the longest label below
it and that label's entropy, as `base_domain` and `entropy` define them) is computed with numpy too,
and each (client, domain) keeps its counts in numpy columns. Python-level work is left to new
(client, domain) pairs and to the names a pair remembers (a few per pair, bounded).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sentinel.collectors.protocols.dnsmsg import NAME_BYTES, name_text, read_questions
from sentinel.models import Observation
from sentinel.traffic.decode import Packets
from sentinel.traffic.detectors.base import MAX_PER_KIND, Context, reports, unreported
from sentinel.traffic.table import DEFAULT_MAX_ENTRIES, U64Index, U64Set, first_seen, members, mix64, rank_within

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
F64 = npt.NDArray[np.float64]
TXT, NULL_RR = 16, 10
#: Names remembered per (client, domain); past it every query of a name not remembered counts as new.
MAX_NAMES = 4096
#: Names remembered over all (client, domain) pairs together (8-byte hashes), so hostile traffic with
#: many pairs cannot make the pairs' name memory grow without end; past it, as past MAX_NAMES.
MAX_REMEMBERED = 1_000_000
MAX_RESOLVERS = 16
NAMES_SAMPLE = 5
#: DNS messages are parsed up to this many bytes (the classic UDP limit).
MAX_MESSAGE = 512
#: Queries read at a time (bounds the copy of their messages: SLICE x MAX_MESSAGE bytes).
SLICE = 8192
SECOND_LEVEL = {"com", "net", "org", "gov", "edu", "ac", "co"}
DOT = ord(".")


def base_domain(labels: list[str]) -> str:
    keep = 3 if len(labels) >= 3 and labels[-2] in SECOND_LEVEL and len(labels[-1]) == 2 else 2
    return ".".join(labels[-keep:])


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


#: _TERMS[n, c] is the term `entropy` adds for a character seen c times in n (0 for c = 0), computed
#: the same way, so that summing a label's terms in the same order gives the same float.
_TERMS = np.array([[c / n * math.log2(c / n) if 0 < c <= n else 0.0 for c in range(64)] for n in range(64)])
#: Rows of the pairwise character comparison made at a time (rows x 63 x 63 booleans).
_ENTROPY_ROWS = 2048
_P = 0x100000001B3  # odd, so it has an inverse modulo 2**64
_P_INV = pow(_P, -1, 1 << 64)


@dataclass(frozen=True, slots=True)
class NameStats:
    """Per question name (rows of a `Questions`): hashes of the name and of its domain, where the domain
    starts, and where the longest label below it starts and its length (-1: no label below the domain).
    The label's entropy is computed apart (`label_entropy`), for the names that need it."""

    name: U64
    domain: U64
    domain_start: I64
    label_start: I64
    label: I64


class _Suffixes:
    """Polynomial hashes of any suffix of each row's name, from one cumulative sum per row."""

    def __init__(self, names: npt.NDArray[np.uint8]) -> None:
        span = names.shape[1]
        with np.errstate(over="ignore"):
            self.powers = np.cumprod(np.r_[np.uint64(1), np.full(max(span - 1, 0), _P, np.uint64)])[:span]
            self.inverse = np.cumprod(np.r_[np.uint64(1), np.full(max(span - 1, 0), _P_INV, np.uint64)])[:span]
            self.sums = np.cumsum((names.astype(np.uint64) + np.uint64(1)) * self.powers, axis=1, dtype=np.uint64)

    def of(self, rows: I64, start: I64, end: I64) -> U64:
        """Hash of names[row, start:end] (end > start)."""
        with np.errstate(over="ignore"):
            total = self.sums[rows, end - 1]
            before = np.where(start > 0, self.sums[rows, np.maximum(start - 1, 0)], np.uint64(0))
            poly = (total - before) * self.inverse[start]
        return mix64(poly.view(np.int64), end - start)


def name_hash(text: str) -> int:
    """The hash NameStats gives a name (or domain) with this text (lower-case ASCII, as listed domains are)."""
    raw = np.frombuffer(text.encode("ascii", "replace").translate(NAME_BYTES), np.uint8).reshape(1, -1)
    if not raw.size:
        return 0
    zero = np.zeros(1, np.int64)
    return int(_Suffixes(raw).of(zero, zero, np.array([raw.shape[1]]))[0])


def name_stats(names: npt.NDArray[np.uint8], lengths: I64) -> NameStats:
    """For names split at their dots (NAME_BYTES rows): where `base_domain` starts, and where the longest
    label below it starts and how long it is, all rows at once (rows of length 0 are left 0)."""
    u, span = names.shape
    if not u or not span:
        zero = np.zeros(u, np.int64)
        return NameStats(zero.astype(np.uint64), zero.astype(np.uint64), zero, zero, zero - 1)
    row = np.arange(u)
    col = np.arange(span)
    inside = col < lengths[:, None]
    dot = (names == DOT) & inside
    seg = np.cumsum(dot, axis=1)  # the label each column is in (a dot counts with the label after it)
    count = seg[:, -1] + 1
    most = int(count.max())
    chars = inside & ~dot
    label_len = np.bincount((row[:, None] * most + seg)[chars], minlength=u * most).reshape(u, most)
    starts = np.zeros((u, most), np.int64)
    dr, dc = np.nonzero(dot)
    starts[dr, seg[dr, dc]] = dc + 1
    # base_domain: the last three labels when the second-last is a generic second level under a
    # two-letter last one, else the last two
    second = np.maximum(count - 2, 0)
    s2, len2 = starts[row, second], label_len[row, second]
    generic = np.zeros(u, bool)
    for word in SECOND_LEVEL:
        match = len2 == len(word)
        for j, ch in enumerate(word.encode()):
            match &= names[row, np.minimum(s2 + j, span - 1)] == ch
        generic |= match
    keep = np.where((count >= 3) & generic & (label_len[row, count - 1] == 2), 3, 2)
    first_of_domain = count - np.minimum(keep, count)
    domain_start = starts[row, first_of_domain]
    below = np.arange(most) < first_of_domain[:, None]
    longest = np.argmax(np.where(below, label_len, -1), axis=1)  # the first of the longest
    has = first_of_domain > 0
    label = np.where(has, label_len[row, longest], -1)
    suffixes = _Suffixes(names)
    zero = np.zeros(u, np.int64)
    ends = np.maximum(lengths, 1)
    return NameStats(
        suffixes.of(row, zero, ends), suffixes.of(row, domain_start, ends), domain_start, starts[row, longest], label
    )


def label_entropy(names: npt.NDArray[np.uint8], stats: NameStats, rows: I64) -> F64:
    """`entropy` of the longest label below the domain, for some rows (0 where there is none)."""
    out = np.zeros(rows.size, np.float64)
    todo = np.flatnonzero(stats.label[rows] > 0)
    for lo in range(0, todo.size, _ENTROPY_ROWS):
        part = todo[lo : lo + _ENTROPY_ROWS]
        r = rows[part]
        out[part] = _entropies(names[r], stats.label_start[r], stats.label[r])
    return out + 0.0  # never -0.0


def _entropies(names: npt.NDArray[np.uint8], start: I64, n: I64) -> F64:
    """`entropy` of names[i, start[i]:start[i] + n[i]] (n >= 1): its terms summed left to right in the
    order the characters first occur, as Python's sum over a Counter does."""
    width = int(n.max())
    j = np.arange(width)
    valid = j < n[:, None]
    chars = np.where(valid, names[np.arange(n.size)[:, None], np.minimum(start[:, None] + j, names.shape[1] - 1)], 0)
    same = (chars[:, :, None] == chars[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    seen_before = np.triu(np.ones((width, width), bool), 1)  # [k, j]: k < j
    first = valid & ~(same & seen_before[None]).any(axis=1)
    counts = np.where(first, same.sum(axis=1), 0)
    terms = _TERMS[n[:, None], counts]
    total: F64 = np.cumsum(terms, axis=1)[:, -1]
    return -total


class DomainUses:
    """Per (client, registered domain): queries, TXT/NULL queries, distinct names and the longest, most
    random label, in numpy columns found through a hash index. At most `max_entries` pairs are stored;
    queries of later new pairs are counted in `overflow`."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.overflow = 0
        self._index = U64Index()
        self.domain: list[bytes] = []  # the registered domain (NAME_BYTES), made text when reported
        self.samples: list[list[bytes]] = []  # the NAMES_SAMPLE smallest remembered names (NAME_BYTES)
        self.client = np.zeros(0, np.int64)
        self.queries = np.zeros(0, np.int64)
        self.txt_null = np.zeros(0, np.int64)
        self.distinct = np.zeros(0, np.int64)
        self.remembered = np.zeros(0, np.int64)
        self.max_label = np.zeros(0, np.int64)
        self.max_entropy = np.zeros(0, np.float64)
        self.resolver_count = np.zeros(0, np.int64)
        self.resolvers = np.zeros((0, MAX_RESOLVERS), np.int64)

    def __len__(self) -> int:
        return len(self.domain)

    def admit(self, keys: U64, clients: I64) -> tuple[I64, I64]:
        """Slot of each key (distinct, in the order they were first seen), admitting new ones while there
        is room (-1 for refused keys), and which keys were admitted: the caller appends their domains."""
        slots = self._index.get(keys)
        new = np.flatnonzero(slots < 0)
        admitted = new[: max(self.max_entries - len(self), 0)]
        if admitted.size:
            start = len(self)
            slots[admitted] = np.arange(start, start + admitted.size)
            self._index.insert(keys[admitted], slots[admitted])
            self._grow(start + admitted.size)
            self.client[start : start + admitted.size] = clients[admitted]
            self.samples.extend([] for _ in range(admitted.size))
        return slots, admitted

    def _grow(self, size: int) -> None:
        cap = self.client.size
        if size <= cap:
            return
        extra = max(size, min(2 * cap, self.max_entries), 1024) - cap
        for name in ("client", "queries", "txt_null", "distinct", "remembered", "max_label", "resolver_count"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra, np.int64)]))
        self.max_entropy = np.concatenate([self.max_entropy, np.zeros(extra, np.float64)])
        self.resolvers = np.concatenate([self.resolvers, np.zeros((extra, MAX_RESOLVERS), np.int64)])


def message_rows(arr: npt.NDArray[np.uint8], start: I64, size: I64) -> npt.NDArray[np.uint8]:
    """Row i: arr[start[i] : start[i] + size[i]], zero-padded to the longest. Rows are copied whole from a
    strided view of the buffer (an index per byte would take eight times the rows' memory); the few that
    start too near the buffer's end for a whole row are copied as far as it goes."""
    width = int(size.max()) if size.size else 0
    rows = np.zeros((start.size, width), np.uint8)
    if not width:
        return rows
    near_end = start + width > arr.size
    whole = np.flatnonzero(~near_end)
    if whole.size:
        window = np.lib.stride_tricks.as_strided(arr, (arr.size - width + 1, width), (1, 1), writeable=False)
        rows[whole] = window[start[whole]]
    for i in np.flatnonzero(near_end).tolist():
        piece = arr[start[i] : start[i] + width]
        rows[i, : piece.size] = piece
    rows *= np.arange(width) < size[:, None]
    return rows


class DnsDetector:
    fields = reports(
        {
            "traffic.dns_tunnel": {"source_ip", "destination_ip", "destination_port", "dns.domain", "dns.queries"}
            | {"dns.distinct_names", "dns.max_label_length", "dns.max_label_entropy", "dns.txt_null_queries"}
            | {"dns.names_sample"}
        }
    )

    def __init__(
        self, on_name: Callable[[list[str], I64, I64, I64], None] | None = None, listed: list[str] | None = None
    ) -> None:
        """`on_name(names, which, clients, resolvers)`: the queries (in order) of the names that have a
        suffix in `listed` (domains of threat-intelligence lists): query i asked names[which[i]]."""
        self.domains = DomainUses()
        self.on_name = on_name
        self._listed = np.unique(np.array([name_hash(d) for d in listed or ()], np.uint64))
        self._names = U64Set()  # (pair, name) hashes of the names remembered
        self._resolvers = U64Set()  # (pair, resolver) hashes of the resolvers remembered

    def feed(self, p: Packets) -> None:
        queries = np.flatnonzero(p.udp & (p.dport == 53) & (p.plen > 0))
        for start in range(0, queries.size, SLICE):
            self._slice(p, queries[start : start + SLICE])

    def _slice(self, p: Packets, idx: I64) -> None:
        # The distinct messages (their ids aside) are parsed once each: clients repeat the same questions.
        size = np.minimum(p.plen[idx], MAX_MESSAGE)
        rows = message_rows(np.frombuffer(p.buf, np.uint8), p.pstart[idx], size)
        width = rows.shape[1]
        rows[:, :2] = 0
        keys = np.ascontiguousarray(np.hstack([rows, size.view(np.uint8).reshape(-1, 8)]))
        _, first, inverse = np.unique(keys.view(f"V{width + 8}").ravel(), return_index=True, return_inverse=True)
        q = read_questions(rows[first], size[first])
        asked = q.ok[inverse.ravel()]
        if not asked.any():
            return
        message = inverse.ravel()[asked]
        client, resolver = p.src[idx][asked], p.dst[idx][asked]
        stats = name_stats(q.names, q.lengths)
        domain = stats.domain[message]
        uses, use_first, _, use_of = first_seen(mix64(client, domain.view(np.int64)))
        use_slots, admitted = self.domains.admit(uses, client[use_first])
        # the bytes only: text is made for the pairs reported (hostile traffic admits a new pair per query)
        firsts = message[use_first[admitted]]
        names, ends = q.names, q.lengths[firsts].tolist()
        self.domains.domain.extend(
            names[m, a:b].tobytes()
            for m, a, b in zip(firsts.tolist(), stats.domain_start[firsts].tolist(), ends, strict=True)
        )
        slot = use_slots[use_of]
        stored = slot >= 0
        self.domains.overflow += int(np.count_nonzero(~stored))
        if not stored.all():
            slot, message, client, resolver = slot[stored], message[stored], client[stored], resolver[stored]
        if not slot.size:
            return
        d = self.domains
        np.add.at(d.queries, slot, 1)
        np.add.at(d.txt_null, slot, np.isin(q.qtype[message], (TXT, NULL_RR)).astype(np.int64))
        has = stats.label[message] >= 0
        np.maximum.at(d.max_label, slot[has], stats.label[message][has])
        needed, which = np.unique(message[has], return_inverse=True)
        np.maximum.at(d.max_entropy, slot[has], label_entropy(q.names, stats, needed)[which.ravel()])
        self._count_names(slot, stats.name[message], message, q.names, q.lengths)
        self._remember_resolvers(slot, resolver)
        if self.on_name is not None and self._listed.size:
            self._listed_names(q.names, q.lengths, message, client, resolver)

    def _count_names(self, slot: I64, name: U64, message: I64, names: npt.NDArray[np.uint8], lengths: I64) -> None:
        """A name a pair remembers counts once; one it cannot remember (MAX_NAMES, MAX_REMEMBERED) counts
        at every query. Names are remembered in the order they are first asked."""
        d = self.domains
        pairs, first, count, _ = first_seen(mix64(slot, name.view(np.int64)))
        pair_slot = slot[first]
        new = ~self._names.contains(pairs)
        if not new.any():
            return
        pairs, pair_slot, count, first = pairs[new], pair_slot[new], count[new], first[new]
        room = np.maximum(MAX_NAMES - d.remembered[pair_slot], 0)
        admit = rank_within(pair_slot) < room
        admit &= np.cumsum(admit) <= MAX_REMEMBERED - len(self._names)
        np.add.at(d.distinct, pair_slot, np.where(admit, 1, count))
        if not admit.any():
            return
        self._names.add(pairs[admit])
        np.add.at(d.remembered, pair_slot[admit], 1)
        # the sample: each pair's smallest remembered names (sorted() of them, as they are reported)
        kept_slots, kept_messages = pair_slot[admit], message[first[admit]]
        by_slot: dict[int, list[bytes]] = {}
        for s, m in zip(kept_slots.tolist(), kept_messages.tolist(), strict=True):
            by_slot.setdefault(s, []).append(names[m, : lengths[m]].tobytes())
        for s, fresh in by_slot.items():
            d.samples[s] = heapq.nsmallest(NAMES_SAMPLE, d.samples[s] + fresh)

    def _remember_resolvers(self, slot: I64, resolver: I64) -> None:
        d = self.domains
        pairs, first, _, _ = first_seen(mix64(slot, resolver))
        new = ~self._resolvers.contains(pairs)
        if not new.any():
            return
        pairs, first = pairs[new], first[new]
        pair_slot = slot[first]
        position = d.resolver_count[pair_slot] + rank_within(pair_slot)
        admit = position < MAX_RESOLVERS
        if admit.any():
            self._resolvers.add(pairs[admit])
            d.resolvers[pair_slot[admit], position[admit]] = resolver[first[admit]]
            np.add.at(d.resolver_count, pair_slot[admit], 1)

    def _listed_names(
        self, names: npt.NDArray[np.uint8], lengths: I64, message: I64, client: I64, resolver: I64
    ) -> None:
        """The queries of names that may be under a listed domain, handed to `on_name` in the order asked.
        A name's suffixes at its dots are hashed; only names with a listed hash reach Python."""
        on_name = self.on_name
        assert on_name is not None
        asked = np.unique(message)
        span = names.shape[1]
        col = np.arange(span)
        inside = col < lengths[asked, None]
        chosen = names[asked]
        end = np.where(inside & (chosen != DOT), col + 1, 0).max(axis=1)  # trailing dots do not count
        rows, cols = np.nonzero((chosen == DOT) & (col < end[:, None] - 1))
        which = np.r_[np.arange(asked.size), rows]
        starts = np.r_[np.zeros(asked.size, np.int64), cols + 1]
        which, starts = which[end[which] > starts], starts[end[which] > starts]
        hit = np.unique(which[np.isin(_Suffixes(chosen).of(which, starts, end[which]), self._listed)])
        if not hit.size:
            return
        chosen_messages = asked[hit]
        texts = [name_text(names[m, : lengths[m]].tobytes()) for m in chosen_messages.tolist()]
        rows = np.flatnonzero(members(message, chosen_messages))  # every query of those names, in order
        on_name(texts, np.searchsorted(chosen_messages, message[rows]), client[rows], resolver[rows])

    def observations(self, ctx: Context) -> list[Observation]:
        book, d = ctx.book, self.domains
        size = len(d)
        measure = d.distinct[:size] + d.txt_null[:size]
        chosen = np.argsort(-measure, kind="stable")[:MAX_PER_KIND]  # ties: in the order the pairs were stored
        out: list[Observation] = []
        for s in chosen.tolist():
            client = book.text(int(d.client[s]))
            domain = name_text(d.domain[s])
            data = {
                "source_ip": client,
                "destination_ip": ctx.ips(d.resolvers[s, : d.resolver_count[s]].tolist()),
                "destination_port": 53,
                "dns.domain": domain,
                "dns.queries": int(d.queries[s]),
                "dns.distinct_names": int(d.distinct[s]),
                "dns.max_label_length": int(d.max_label[s]),
                "dns.max_label_entropy": round(float(d.max_entropy[s]), 3),
                "dns.txt_null_queries": int(d.txt_null[s]),
                "dns.names_sample": [name_text(n) for n in d.samples[s]],
            }
            obs = ctx.observation(
                "traffic.dns_tunnel", book.attribute(int(d.client[s])), f"{client} -> {domain} (dns)", data
            )
            out.append(obs)
        return unreported(out, size - len(out))
