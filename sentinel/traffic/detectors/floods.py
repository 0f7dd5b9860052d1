"""SYN floods (rate and share of handshakes never completed) and ICMP floods / oversized ICMP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sentinel.models import Observation
from sentinel.models.target import port_target
from sentinel.traffic.decode import ACK, RST, SYN, Packets
from sentinel.traffic.detectors.base import MAX_PER_KIND, SAMPLE, Context, largest, reports
from sentinel.traffic.table import (
    DEFAULT_MAX_ENTRIES,
    Activity,
    ActivityTable,
    HashFilter,
    KeyedColumns,
    U64Index,
    first_seen,
    group,
    last_seen,
    mix64,
    rank_within,
)

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


class SourceBudget:
    """The SYN sources of every service of one detector, in numpy columns: per stored (service, source)
    pair its SYNs, and per service how many sources it stores and how many SYNs came from sources it
    could not store. `left`: how many more pairs may be stored, over all services together."""

    def __init__(self, left: int = MAX_STORED_SOURCES) -> None:
        self.left = left
        self._index = U64Index()  # (service, source) hash -> pair
        self._pairs = 0
        self.service = np.zeros(0, np.int64)  # per pair
        self.source = np.zeros(0, np.int64)
        self.count = np.zeros(0, np.int64)
        self.stored = np.zeros(0, np.int64)  # per service
        self.unattributed = np.zeros(0, np.int64)
        self._services = 0
        self._grouped: tuple[I64, I64] | None = None  # pairs sorted by service, and where each service starts

    def new_services(self, n: int) -> int:
        """Room for n more services; the first one's number."""
        first = self._services
        self._services += n
        if self._services > self.stored.size:
            extra = max(self._services, 2 * self.stored.size, 1024) - self.stored.size
            self.stored = np.concatenate([self.stored, np.zeros(extra, np.int64)])
            self.unattributed = np.concatenate([self.unattributed, np.zeros(extra, np.int64)])
        return first

    def add(self, service: I64, sources: I64) -> None:
        """One SYN from sources[i] to service[i] each, in the order they arrived. A service stores new
        sources, first come first, while it has fewer than MAX_SOURCES and the budget lasts."""
        if not service.size:
            return
        pairs, first, count, _ = first_seen(mix64(service, sources))
        at = self._index.get(pairs)
        known = at >= 0
        self.count[at[known]] += count[known]
        new = np.flatnonzero(~known)
        if not new.size:
            return
        svc = service[first[new]]
        admit = rank_within(svc) < MAX_SOURCES - self.stored[svc]
        admit &= np.cumsum(admit) <= self.left
        np.add.at(self.unattributed, svc[~admit], count[new[~admit]])
        chosen = new[admit]
        if not chosen.size:
            return
        start, end = self._pairs, self._pairs + chosen.size
        if end > self.count.size:
            extra = max(end, 2 * self.count.size, 1024) - self.count.size
            for name in ("service", "source", "count"):
                setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra, np.int64)]))
        self._index.insert(pairs[chosen], np.arange(start, end))
        self.service[start:end], self.source[start:end] = svc[admit], sources[first[chosen]]
        self.count[start:end] = count[chosen]
        np.add.at(self.stored, svc[admit], 1)
        self._pairs, self.left = end, self.left - chosen.size
        self._grouped = None

    def top(self, service: int, n: int) -> list[tuple[int, int]]:
        """The n sources of a service with the most SYNs (ties: lower address first), as (source id, SYNs)."""
        if self._grouped is None:
            order = np.argsort(self.service[: self._pairs], kind="stable")
            self._grouped = order, np.searchsorted(self.service[: self._pairs][order], np.arange(self._services + 1))
        order, starts = self._grouped
        mine = order[starts[service] : starts[service + 1]]
        ids, counts = self.source[mine], self.count[mine]
        best = np.lexsort((ids, -counts))[:n]
        return list(zip(ids[best].tolist(), counts[best].tolist(), strict=True))


class SourceCounts:
    """SYNs per source of one service: its part of a SourceBudget (at most MAX_SOURCES sources; SYNs of
    later new sources, or of any once the budget is spent, are counted in `unattributed`)."""

    __slots__ = ("budget", "service")

    def __init__(self, budget: SourceBudget | None = None, service: int | None = None) -> None:
        self.budget = budget if budget is not None else SourceBudget()
        self.service = self.budget.new_services(1) if service is None else service

    def add(self, sources: I64) -> None:
        """One batch's SYN sources (any order, repeats allowed)."""
        self.budget.add(np.full(sources.size, self.service, np.int64), sources)

    @property
    def unattributed(self) -> int:
        return int(self.budget.unattributed[self.service])

    def __len__(self) -> int:
        return int(self.budget.stored[self.service])

    def top(self, n: int) -> list[tuple[int, int]]:
        """The n sources with the most SYNs (ties: lower address first), as (source id, SYNs)."""
        return self.budget.top(self.service, n)


@dataclass(slots=True)
class Service:
    synacks: int = 0
    completed: int = 0
    sources: SourceCounts = field(default_factory=SourceCounts)


class Services:
    """Per service (destination, port): SYN-ACKs, completed handshakes and SYN sources (its SourceCounts
    in the detector's budget), in numpy columns. At most `max_entries` services are stored; each time a
    new one is refused, `overflow` counts it."""

    def __init__(self, budget: SourceBudget, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.budget, self.max_entries = budget, max_entries
        self.overflow = 0
        self._index = U64Index()
        self.dst = np.zeros(0, np.int64)
        self.port = np.zeros(0, np.int64)
        self.synacks = np.zeros(0, np.int64)
        self.completed = np.zeros(0, np.int64)
        self.budget_slot = np.zeros(0, np.int64)  # the service's number in the budget

    def __len__(self) -> int:
        return len(self._index)

    def slots(self, dst: I64, port: I64) -> I64:
        """The slot of each row's service, -1 where it is refused. New services are stored in (destination,
        port) order."""
        g = group(dst, port)
        keys = mix64(g.keys[0], g.keys[1])
        found = self._index.get(keys)
        new = np.flatnonzero(found < 0)
        admitted = new[: max(self.max_entries - len(self), 0)]
        self.overflow += int(new.size - admitted.size)
        if admitted.size:
            start, end = len(self), len(self) + admitted.size
            if end > self.dst.size:
                extra = max(end, min(2 * self.dst.size, self.max_entries), 1024) - self.dst.size
                for name in ("dst", "port", "synacks", "completed", "budget_slot"):
                    setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra, np.int64)]))
            found[admitted] = np.arange(start, end)
            self._index.insert(keys[admitted], found[admitted])
            self.dst[start:end], self.port[start:end] = g.keys[0][admitted], g.keys[1][admitted]
            first = self.budget.new_services(admitted.size)
            self.budget_slot[start:end] = np.arange(first, first + admitted.size)
        out = np.empty(dst.size, np.int64)
        out[g.order] = np.repeat(found, g.counts)
        return out

    def _view(self, slot: int) -> Service:
        return Service(
            int(self.synacks[slot]), int(self.completed[slot]), SourceCounts(self.budget, int(self.budget_slot[slot]))
        )

    def get(self, key: tuple[int, int]) -> Service | None:
        """The service's totals (without storing it when it is new)."""
        slot = int(self._index.get(mix64(np.array([key[0]]), np.array([key[1]])))[0])
        return None if slot < 0 else self._view(slot)

    def items(self) -> Iterator[tuple[tuple[int, int], Service]]:
        for slot in range(len(self)):
            yield (int(self.dst[slot]), int(self.port[slot])), self._view(slot)


class PendingSyns:
    """SYNs waiting for the client's ACK, as a dict from flow key to code would keep them (a repeated
    SYN keeps its place, an ACKed flow leaves, the oldest are forgotten past `limit`), in numpy: a log
    of entries in arrival order with a hash index, compacted when it fills."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self.limit = limit
        room = limit + limit // 4  # compacted every limit // 4 new flows at most; the index holds the log's keys
        self.keys = np.zeros(room, np.uint64)
        self.codes = np.zeros(room, np.int64)
        self.alive = np.zeros(room, bool)
        self.head = 0  # entries written to the log, dead ones included
        self.live = 0
        self._index = U64Index()  # key -> its latest position in the log

    def __len__(self) -> int:
        return self.live

    def live_keys(self) -> npt.NDArray[np.uint64]:
        return self.keys[: self.head][self.alive[: self.head]]

    def put(self, keys: npt.NDArray[np.uint64], codes: I64) -> None:
        """SYNs in arrival order: a flow already waiting keeps its place and takes the latest code."""
        uniq, _, _, which = first_seen(keys)
        latest = codes[last_seen(which, uniq.size)]
        at = self._index.get(uniq)
        waiting = at >= 0
        waiting[waiting] = self.alive[at[waiting]]
        self.codes[at[waiting]] = latest[waiting]
        new, values = uniq[~waiting], latest[~waiting]
        if self.head + new.size > self.keys.size:
            self._compact(new.size)
        start, end = self.head, self.head + new.size
        self.keys[start:end], self.codes[start:end], self.alive[start:end] = new, values, True
        self._index.assign(new, np.arange(start, end))
        self.head, self.live = end, self.live + new.size
        excess = self.live - self.limit
        if excess > 0:  # forget the oldest (they stay counted as half-open)
            oldest = np.flatnonzero(self.alive[: self.head])[:excess]
            self.alive[oldest] = False
            self.live -= excess

    def pop(self, keys: npt.NDArray[np.uint64]) -> I64:
        """The codes of the waiting flows among `keys` (each flow once), which stop waiting."""
        uniq = np.unique(keys)
        at = self._index.get(uniq)
        found = at >= 0
        found[found] = self.alive[at[found]]
        done = at[found]
        self.alive[done] = False
        self.live -= done.size
        return self.codes[done]

    def _compact(self, room: int) -> None:
        """Move the live entries to the front, in order, and rebuild the index."""
        keep = np.flatnonzero(self.alive[: self.head])
        n = keep.size
        if n + room > self.keys.size:
            extra = n + room - self.keys.size
            self.keys = np.concatenate([self.keys, np.zeros(extra, np.uint64)])
            self.codes = np.concatenate([self.codes, np.zeros(extra, np.int64)])
            self.alive = np.concatenate([self.alive, np.zeros(extra, bool)])
        self.keys[:n], self.codes[:n] = self.keys[keep], self.codes[keep]
        self.alive[:] = False
        self.alive[:n] = True
        self.head = n
        self._index = U64Index()
        self._index.insert(self.keys[:n], np.arange(n))


class SynFloodDetector:
    fields = reports(
        {
            "traffic.syn_flood": {"source_ip", "destination_ip", "destination_port", "syn.count", "syn.duration_s"}
            | {"syn.peak_per_second", "syn.peak_per_minute", "syn.sources", "syn.top_sources", "syn.unattributed"}
            | {"syn.answered", "syn.completed", "syn.half_open_ratio"}
        }
    )

    def __init__(self) -> None:
        self.syns = ActivityTable()
        self.budget = SourceBudget()
        self.services = Services(self.budget)
        self._pending = PendingSyns()  # flow key of a SYN awaiting the client's ACK → dst << 16 | port
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
            at = self.services.slots(dst, port)
            stored = at >= 0
            self.budget.add(self.services.budget_slot[at[stored]], src[stored])
            flows = flow_key(src, dst, p.sport[syn], port)
            self._pending.put(flows, dst << 16 | port)
            self._remember(flows)
        synack = np.flatnonzero(p.tcp & ((f & (SYN | ACK)) == (SYN | ACK)))
        if synack.size:
            at = self.services.slots(p.src[synack], p.sport[synack])
            np.add.at(self.services.synacks, at[at >= 0], 1)
        if self._pending:
            ack = np.flatnonzero(p.tcp & ((f & (SYN | ACK | RST)) == ACK))
            if ack.size:
                keys = flow_key(p.src[ack], p.dst[ack], p.sport[ack], p.dport[ack])
                codes = self._pending.pop(keys[self._maybe_pending.maybe(keys)])  # a flow completes once
                if codes.size:
                    at = self.services.slots(codes >> 16, codes & 0xFFFF)
                    np.add.at(self.services.completed, at[at >= 0], 1)

    def _remember(self, flows: npt.NDArray[np.uint64]) -> None:
        self._filtered += flows.size
        if self._filtered > 4 * MAX_PENDING:  # keeps the filter's false positives rare
            self._maybe_pending = HashFilter()
            self._maybe_pending.add(self._pending.live_keys())
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


class IcmpDetector:
    fields = reports(
        {
            "traffic.icmp_flood": {"source_ip", "destination_ip", "icmp.count", "icmp.duration_s"}
            | {"icmp.peak_per_second", "icmp.peak_per_minute", "icmp.echo_requests", "icmp.max_bytes"}
        }
    )

    def __init__(self) -> None:
        self.activity = ActivityTable()
        # per (source, destination): the largest datagram and the echo requests, in numpy columns (a dict entry
        # per pair cost a Python loop over every pair of a batch: most of the detector on spoofed sources)
        self.peers = KeyedColumns({"max_bytes": (np.int64, 0), "echo_requests": (np.int64, 0)})

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
        slots = self.peers.slots(g.keys)
        ok = slots >= 0
        at = slots[ok]
        biggest, requests = self.peers.col["max_bytes"], self.peers.col["echo_requests"]
        biggest[at] = np.maximum(biggest[at], g.reduce_max(size)[ok])
        requests[at] += g.reduce_sum(echo)[ok]

    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        out: list[tuple[float, Observation]] = []
        count = len(self.peers)
        biggest, requests = self.peers.col["max_bytes"][:count], self.peers.col["echo_requests"][:count]
        # the MAX_PER_KIND largest before any text is formatted, ties in the order the pairs were first seen
        chosen = np.argsort(-(biggest + requests), kind="stable")[:MAX_PER_KIND]
        pairs = self.peers.keys(chosen)
        activities = self.activity.get_many(self.peers.key_columns(chosen)) if count else []
        for (s, d), most, n, found in zip(
            pairs, biggest[chosen].tolist(), requests[chosen].tolist(), activities, strict=True
        ):
            act = found or Activity()
            src, dst = book.text(s), book.text(d)
            data = {
                "source_ip": src,
                "destination_ip": dst,
                **act.fields("icmp"),
                "icmp.echo_requests": n,
                "icmp.max_bytes": most,
            }
            obs = ctx.observation("traffic.icmp_flood", book.attribute(d, s), f"{src} -> {dst}/icmp", data)
            out.append((act.peak_per_second + most / 1e6, obs))
        return largest(out, count)
