"""ARP spoofing: an IPv4 address claimed by more than one MAC address."""

from __future__ import annotations

from dataclasses import dataclass, field

from sentinel.models import Observation
from sentinel.traffic.decode import Packets
from sentinel.traffic.detectors.base import SAMPLE, Context, largest, reports, top_keys
from sentinel.traffic.table import BoundedTable, group

#: MACs remembered per claimed address; packets from further MACs are counted, not remembered
MAX_MACS = 64


@dataclass(slots=True)
class Claims:
    macs: dict[int, float] = field(default_factory=dict)  # MAC → first time it claimed the address
    replies: int = 0
    unrecorded: int = 0  # packets from MACs past MAX_MACS: `arp.macs` is then a lower bound
    targets: set[int] = field(default_factory=set)


def mac_text(mac: int) -> str:
    return ":".join(f"{mac >> s & 0xFF:02x}" for s in range(40, -8, -8))


class ArpDetector:
    fields = reports(
        {
            "traffic.arp_spoof": {"source_ip", "destination_ip", "arp.macs", "arp.mac_list", "arp.first_mac"}
            | {"arp.replies", "arp.unrecorded_packets"}
        }
    )

    def __init__(self) -> None:
        self.claims: BoundedTable[int, Claims] = BoundedTable(Claims)

    def feed(self, p: Packets) -> None:
        if not p.arp.size:
            return
        ts = p.ts[p.arp]
        g = group(p.arp_sip, p.arp_mac, p.arp_op, p.arp_tip)
        firsts = g.reduce_min(ts)
        for (ip, mac, op, target), n, first in zip(g.rows(), g.counts.tolist(), firsts.tolist(), strict=True):
            if ip == 0:  # address probes (RFC 5227) claim nothing
                continue
            claims = self.claims.get(ip)
            if claims is None:
                continue
            known = claims.macs.get(mac)
            if known is not None:
                claims.macs[mac] = min(known, first)
            elif len(claims.macs) < MAX_MACS:
                claims.macs[mac] = first
            else:
                claims.unrecorded += n
            if op == 2:
                claims.replies += n
                if len(claims.targets) < SAMPLE:
                    claims.targets.add(target)

    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        out: list[tuple[float, Observation]] = []
        for ip, claims in top_keys(self.claims.items(), lambda c: len(c.macs)):
            address = book.text(ip)
            ordered = sorted(claims.macs, key=lambda m: claims.macs[m])
            data = {
                "source_ip": address,
                "destination_ip": ctx.ips(claims.targets),
                "arp.macs": len(claims.macs),
                "arp.mac_list": [mac_text(m) for m in ordered[:SAMPLE]],
                "arp.first_mac": mac_text(ordered[0]),
                "arp.replies": claims.replies,
                "arp.unrecorded_packets": claims.unrecorded,
            }
            out.append(
                (len(claims.macs), ctx.observation("traffic.arp_spoof", book.attribute(ip), f"arp {address}", data))
            )
        return largest(out, len(self.claims))
