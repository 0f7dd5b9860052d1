"""Traffic to or from addresses on threat-intelligence lists, and names of listed domains looked up or visited."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sentinel.models import Observation
from sentinel.traffic.addresses import V6_BASE, AddressBook
from sentinel.traffic.decode import Packets
from sentinel.traffic.detectors.base import Context, largest, reports, top_keys
from sentinel.traffic.intel import ThreatIntel
from sentinel.traffic.table import BoundedTable, group

I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class Contact:
    packets: int = 0
    bytes: int = 0
    first: float = float("inf")


class IntelDetector:
    fields = reports(
        {
            "traffic.threat_intel": {"source_ip", "destination_ip", "intel.indicator", "intel.list", "intel.match"}
            | {"intel.direction", "intel.packets", "intel.bytes"}
        }
    )

    def __init__(self, intel: ThreatIntel, book: AddressBook) -> None:
        self.intel = intel
        self.book = book
        self.listed: dict[int, str] = {book.id_of(a): name for a, name in intel.addresses.items()}
        ranges = sorted(intel.v4_ranges)
        self._starts = np.array([r[0] for r in ranges], np.int64)
        self._ends = np.array([r[1] for r in ranges], np.int64)
        self._range_names = [r[2] for r in ranges]
        self._v6_checked: set[int] = set()
        self.contacts: BoundedTable[tuple[int, int], Contact] = BoundedTable(Contact)
        self.names: BoundedTable[tuple[int, int, str], Contact] = BoundedTable(Contact)

    def _in_ranges(self, ids: I64) -> npt.NDArray[np.bool_]:
        if not self._starts.size:
            return np.zeros(ids.size, bool)
        at = np.searchsorted(self._starts, ids, "right") - 1
        ok = at >= 0
        return ok & (ids <= self._ends[np.maximum(at, 0)]) & (ids < V6_BASE)

    def _check_v6(self, ids: I64) -> None:
        if not self.intel.v6_networks:
            return
        for aid in np.unique(ids[ids >= V6_BASE]).tolist():
            if aid in self._v6_checked:
                continue
            self._v6_checked.add(aid)
            text = self.book.text(aid)
            if text.startswith("("):
                continue
            addr = ipaddress.ip_address(text)
            for net, name in self.intel.v6_networks:
                if addr in net:
                    self.listed[aid] = name
                    break

    def list_of(self, aid: int) -> str | None:
        name = self.listed.get(aid)
        if name is None and self._starts.size and aid < V6_BASE:
            at = int(np.searchsorted(self._starts, aid, "right")) - 1
            if at >= 0 and aid <= self._ends[at]:
                name = self._range_names[at]
        return name

    def feed(self, p: Packets) -> None:
        if not len(self.intel):
            return
        ip = p.tcp | p.udp | p.icmp
        self._check_v6(np.concatenate([p.src[ip], p.dst[ip]]))
        if not self.listed and not self._starts.size:
            return
        listed = np.array(list(self.listed), np.int64)
        hit = ip & (np.isin(p.src, listed) | np.isin(p.dst, listed) | self._in_ranges(p.src) | self._in_ranges(p.dst))
        if not hit.any():
            return
        g = group(p.src[hit], p.dst[hit])
        sizes = g.reduce_sum(p.wirelen[hit])
        firsts = g.reduce_min(p.ts[hit])
        for (s, d), n, size, first in zip(g.rows(), g.counts.tolist(), sizes.tolist(), firsts.tolist(), strict=True):
            contact = self.contacts.get((s, d))
            if contact is not None:
                contact.packets += n
                contact.bytes += int(size)
                contact.first = min(contact.first, first)

    def on_name(self, name: str, clients: I64, servers: I64) -> None:
        """Requests naming `name` (HTTP Host headers), one (client, server) per request, in order."""
        self.on_names([name], np.zeros(clients.size, np.int64), clients, servers)

    def on_names(self, names: list[str], which: I64, clients: I64, servers: I64) -> None:
        """Requests naming names[which[i]] (DNS queries, HTTP Host headers) from clients[i] to servers[i],
        in order: contacts are stored in the order their (client, server, listed domain) first occurs."""
        listed: dict[str, int] = {}
        domains: list[str] = []
        code = []
        for name in names:
            match = self.intel.domain_list(name)
            if match is None:
                code.append(-1)
                continue
            if match[0] not in listed:
                listed[match[0]] = len(domains)
                domains.append(match[0])
            code.append(listed[match[0]])
        if not domains:
            return
        domain = np.array(code, np.int64)[which]
        hit = domain >= 0
        g = group(clients[hit], servers[hit], domain[hit])
        keys, counts = list(g.rows()), g.counts.tolist()
        for k in np.argsort(g.reduce_min(np.arange(int(np.count_nonzero(hit)))), kind="stable").tolist():
            client, server, d = keys[k]
            contact = self.names.get((client, server, domains[d]))
            if contact is not None:
                contact.packets += counts[k]

    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        out: list[tuple[float, Observation]] = []
        for (s, d), c in top_keys(self.contacts.items(), lambda c: c.packets):
            src, dst = book.text(s), book.text(d)
            listed_dst = self.list_of(d)
            indicator, name = (dst, listed_dst) if listed_dst else (src, self.list_of(s))
            data = {
                "source_ip": src,
                "destination_ip": dst,
                "intel.indicator": indicator,
                "intel.list": name,
                "intel.match": "address",
                "intel.direction": "to_listed" if listed_dst else "from_listed",
                "intel.packets": c.packets,
                "intel.bytes": c.bytes,
            }
            internal = (s, d) if listed_dst else (d, s)
            out.append(
                (c.packets, ctx.observation("traffic.threat_intel", book.attribute(*internal), f"{src} -> {dst}", data))
            )
        for (cl, sv, domain), c in top_keys(self.names.items(), lambda c: c.packets):
            client = book.text(cl)
            data = {
                "source_ip": client,
                "destination_ip": book.text(sv),
                "intel.indicator": domain,
                "intel.list": self.intel.domains[domain],
                "intel.match": "domain",
                "intel.direction": "to_listed",
                "intel.packets": c.packets,
            }
            obs = ctx.observation("traffic.threat_intel", book.attribute(cl, sv), f"{client} -> {domain}", data)
            out.append((c.packets, obs))
        return largest(out, len(self.contacts) + len(self.names))
