"""SYN floods (rate and share of handshakes never completed) and ICMP floods / oversized ICMP."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sentinel.models import Observation
from sentinel.models.target import port_target
from sentinel.traffic.decode import ACK, RST, SYN, Packets
from sentinel.traffic.detectors.base import MAX_PER_KIND, SAMPLE, Context, largest, top_keys
from sentinel.traffic.table import Activity, ActivityTable, BoundedTable, HashFilter, group

I64 = npt.NDArray[np.int64]
#: SYNs still waiting for the client's ACK are remembered up to this many (the oldest are dropped).
MAX_PENDING = 200_000
MAX_SOURCES = 65_536
#: Sources stored over all services together. Per service MAX_SOURCES would still let a flood of
#: random sources against many ports (65,536 services) store one entry per SYN without end.
MAX_STORED_SOURCES = 250_000


def flow_key(a: I64, b: I64, pa: I64, pb: I64) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of a directed 4-tuple (collisions only blur counts, never crash)."""
    with np.errstate(over="ignore"):
        k = a.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        k ^= b.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        k ^= (pa.astype(np.uint64) << np.uint64(16) | pb.astype(np.uint64)) * np.uint64(0x165667B19E3779F9)
        return k ^ (k >> np.uint64(29))


#: A source is named as one of a flood's sources only when it sent at least this share of the
#: service's SYNs (and more than one): a client that opened a connection or two during the flood
#: is listed among the top senders with its share, but not blamed.
MATERIAL_SHARE = 0.01
MATERIAL_MIN = 2


_NO_SOURCES = np.zeros(0, np.int64)


@dataclass(slots=True)
class SourceBudget:
    """How many more sources the SourceCounts of one detector may store between them."""

    left: int = MAX_STORED_SOURCES


class SourceCounts:
    """SYNs per source of one service. Large batches (a flood) merge into sorted numpy columns, so they
    cost numpy work, not a Python loop per source; the few SYNs a service gets in most batches go to a
    dict, which is cheaper than any numpy call. At most MAX_SOURCES sources are stored; SYNs of later
    new sources are counted in `unattributed` (a spoofed flood has a new source in almost every packet);
    so are they once the detector's SourceBudget is spent."""

    __slots__ = ("budget", "counts", "few", "ids", "unattributed")
    FEW = 32

    def __init__(self, budget: SourceBudget | None = None) -> None:
        self.ids = self.counts = _NO_SOURCES  # replaced, never written to, when the first flood batch arrives
        self.few: dict[int, int] = {}
        self.unattributed = 0
        self.budget = budget if budget is not None else SourceBudget()

    def _room(self) -> int:
        return max(min(MAX_SOURCES - self.ids.size - len(self.few), self.budget.left), 0)

    def add(self, sources: I64) -> None:
        """One batch's SYN sources (any order, repeats allowed)."""
        if sources.size < self.FEW:
            self.add_few(sources.tolist())
            return
        ids, counts = np.unique(sources, return_counts=True)
        at = np.searchsorted(self.ids, ids)
        known = at < self.ids.size
        known[known] = self.ids[at[known]] == ids[known]
        self.counts[at[known]] += counts[known]
        new = np.flatnonzero(~known)
        if not new.size:
            return
        room = self._room()
        self.unattributed += int(counts[new[room:]].sum())
        new = new[:room]
        if new.size:  # both sides are sorted: inserting at the search positions keeps the order, no sort
            self.ids = np.insert(self.ids, at[new], ids[new])
            self.counts = np.insert(self.counts, at[new], counts[new])
            self.budget.left -= int(new.size)

    def add_few(self, sources: list[int]) -> None:
        """A few SYN sources (fewer than FEW), counted in the dict."""
        few = self.few
        room = self._room()
        for s in sources:
            if s in few:
                few[s] += 1
            elif room:
                few[s] = 1
                room -= 1
                self.budget.left -= 1
            else:
                self.unattributed += 1

    def _merged(self) -> tuple[I64, I64]:
        if not self.few:
            return self.ids, self.counts
        ids = np.concatenate([self.ids, np.fromiter(self.few, np.int64, len(self.few))])
        counts = np.concatenate([self.counts, np.fromiter(self.few.values(), np.int64, len(self.few))])
        uniq, inverse = np.unique(ids, return_inverse=True)
        return uniq, np.bincount(inverse.ravel(), weights=counts, minlength=uniq.size).astype(np.int64)

    def __len__(self) -> int:
        return int(self._merged()[0].size)

    def top(self, n: int) -> list[tuple[int, int]]:
        """The n sources with the most SYNs (ties: lower address first), as (source id, SYNs)."""
        ids, counts = self._merged()
        order = np.lexsort((ids, -counts))[:n]
        return list(zip(ids[order].tolist(), counts[order].tolist(), strict=True))


@dataclass(slots=True)
class Service:
    synacks: int = 0
    completed: int = 0
    sources: SourceCounts = field(default_factory=SourceCounts)


class SynFloodDetector:
    def __init__(self) -> None:
        self.syns = ActivityTable()
        self.budget = SourceBudget()
        self.services: BoundedTable[tuple[int, int], Service] = BoundedTable(
            lambda: Service(sources=SourceCounts(self.budget))
        )
        self._pending: dict[int, int] = {}  # flow key of a SYN awaiting the client's ACK → dst << 16 | port
        # flow keys ever made pending: most ACKs belong to flows whose SYN is long gone or unseen,
        # and the filter spares them the dict lookup; rebuilt when stale entries pile up
        self._maybe_pending = HashFilter()
        self._filtered = 0

    def feed(self, p: Packets) -> None:
        f = p.flags
        syn = np.flatnonzero(p.tcp & ((f & (SYN | ACK | RST)) == SYN))
        if syn.size:
            src, dst, port = p.src[syn], p.dst[syn], p.dport[syn]
            self.syns.track([dst, port], p.ts[syn])
            g = group(dst, port)
            by_service = src[g.order]
            listed = by_service.tolist()  # most services get a SYN or two a batch: slices of a list are cheaper
            services = self.services
            for (d, prt), start, n in zip(g.rows(), g.starts.tolist(), g.counts.tolist(), strict=True):
                svc = services.get((d, prt))
                if svc is not None:
                    if n < SourceCounts.FEW:
                        svc.sources.add_few(listed[start : start + n])
                    else:
                        svc.sources.add(by_service[start : start + n])
            flows = flow_key(src, dst, p.sport[syn], port)
            self._pending.update(zip(flows.tolist(), (dst << 16 | port).tolist(), strict=True))
            self._remember(flows)
            excess = len(self._pending) - MAX_PENDING
            if excess > 0:  # forget the oldest (they stay counted as half-open)
                for key in list(itertools.islice(self._pending, excess)):
                    del self._pending[key]
        synack = np.flatnonzero(p.tcp & ((f & (SYN | ACK)) == (SYN | ACK)))
        if synack.size:
            g = group(p.src[synack], p.sport[synack])
            for (d, prt), n in zip(g.rows(), g.counts.tolist(), strict=True):
                svc = self.services.get((d, prt))
                if svc is not None:
                    svc.synacks += n
        if self._pending:
            ack = np.flatnonzero(p.tcp & ((f & (SYN | ACK | RST)) == ACK))
            if ack.size:
                pending = self._pending
                keys = flow_key(p.src[ack], p.dst[ack], p.sport[ack], p.dport[ack])
                keys = keys[self._maybe_pending.maybe(keys)]
                known = np.fromiter(map(pending.__contains__, keys.tolist()), bool, keys.size)
                # a flow ACKed twice in one batch completes once: the second pop finds nothing
                codes = map(pending.pop, keys[known].tolist(), itertools.repeat(-1))
                finished: Counter[int] = Counter(code for code in codes if code >= 0)
                for code, n in finished.items():
                    svc = self.services.get((code >> 16, code & 0xFFFF))
                    if svc is not None:
                        svc.completed += n

    def _remember(self, flows: npt.NDArray[np.uint64]) -> None:
        self._filtered += flows.size
        if self._filtered > 4 * MAX_PENDING:  # keeps the filter's false positives rare
            self._maybe_pending = HashFilter()
            self._maybe_pending.add(np.fromiter(self._pending, np.uint64, len(self._pending)))
            self._filtered = len(self._pending)
        else:
            self._maybe_pending.add(flows)

    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        out: list[tuple[float, Observation]] = []
        for (d, port), act in self.syns.largest(MAX_PER_KIND, self.syns.peak[1]):
            if act.count < 2:  # a single SYN says nothing about a flood
                continue
            svc = self.services.get((d, port)) or Service()
            dst = book.text(d)
            ranked = svc.sources.top(SAMPLE)
            top = [{"source_ip": book.text(s), "syn": n, "share": round(n / act.count, 4)} for s, n in ranked]
            material = [book.text(s) for s, n in ranked if n >= MATERIAL_MIN and n / act.count >= MATERIAL_SHARE]
            data: dict[str, object] = {
                # only the sources that carry a material share of the flood are named as its sources
                "source_ip": material,
                "destination_ip": dst,
                "destination_port": port,
                **act.fields("syn"),
                "syn.sources": len(svc.sources),  # stored ones; see syn.unattributed
                "syn.top_sources": top,
                "syn.unattributed": svc.sources.unattributed,
                "syn.answered": svc.synacks,
                "syn.completed": svc.completed,
                "syn.half_open_ratio": round(max(act.count - svc.completed, 0) / act.count, 4),
            }
            out.append(
                (
                    act.peak_per_second,
                    ctx.observation("traffic.syn_flood", book.attribute(d), port_target(dst, port), data),
                )
            )
        floods = int(np.count_nonzero(self.syns.count[: len(self.syns)] >= 2))  # all that passed the test above
        return largest(out, floods)


@dataclass(slots=True)
class IcmpPeer:
    max_bytes: int = 0
    echo_requests: int = 0


class IcmpDetector:
    def __init__(self) -> None:
        self.activity = ActivityTable()
        self.peers: BoundedTable[tuple[int, int], IcmpPeer] = BoundedTable(IcmpPeer)

    def feed(self, p: Packets) -> None:
        # Echo replies answer someone else's packets: counting them would blame the victim for the flood.
        idx = np.flatnonzero(p.icmp & (p.icmp_type != 0) & (p.icmp_type != 129))
        if idx.size:
            src, dst = p.src[idx], p.dst[idx]
            self.activity.track([src, dst], p.ts[idx])
            echo = np.isin(p.icmp_type[idx], (8, 128)).astype(np.int64)
            self._peers(src, dst, p.ip_len[idx], echo)
        fragments = np.flatnonzero(p.icmp_fragment_end > 0)  # an oversized ICMP arrives fragmented
        if fragments.size:
            none = np.zeros(fragments.size, np.int64)
            self._peers(p.src[fragments], p.dst[fragments], p.icmp_fragment_end[fragments], none)

    def _peers(self, src: I64, dst: I64, size: I64, echo: I64) -> None:
        g = group(src, dst)
        for (s, d), biggest, n in zip(g.rows(), g.reduce_max(size).tolist(), g.reduce_sum(echo).tolist(), strict=True):
            peer = self.peers.get((s, d))
            if peer is not None:
                peer.max_bytes = max(peer.max_bytes, int(biggest))
                peer.echo_requests += int(n)

    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        out: list[tuple[float, Observation]] = []
        for (s, d), peer in top_keys(self.peers.items(), lambda p: p.max_bytes + p.echo_requests):
            act = self.activity.get((s, d)) or Activity()
            src, dst = book.text(s), book.text(d)
            data = {
                "source_ip": src,
                "destination_ip": dst,
                **act.fields("icmp"),
                "icmp.echo_requests": peer.echo_requests,
                "icmp.max_bytes": peer.max_bytes,
            }
            obs = ctx.observation("traffic.icmp_flood", book.attribute(d, s), f"{src} -> {dst}/icmp", data)
            out.append((act.peak_per_second + peer.max_bytes / 1e6, obs))
        return largest(out, len(self.peers))
