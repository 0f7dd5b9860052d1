"""Services seen answering (registered hosts on undeclared ports) and login attempts per client and service."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sentinel.models import Observation
from sentinel.models.target import port_target
from sentinel.traffic.decode import ACK, RST, SYN, Packets
from sentinel.traffic.detectors.base import Context, largest, reports, top_keys
from sentinel.traffic.table import Activity, ActivityTable, BoundedTable, group

LOGIN_SERVICES = {22: "ssh", 3389: "rdp", 5900: "vnc", 21: "ftp", 23: "telnet", 110: "pop3", 143: "imap"}
LOGIN_SERVICES |= {25: "smtp", 587: "smtp", 80: "http", 8080: "http", 8000: "http"}
#: Connections are counted for these; web logins are counted by their 401 answers instead, since
#: every page load is a connection.
CONNECTION_COUNTED = [port for port, name in LOGIN_SERVICES.items() if name != "http"]
MAX_CLIENTS = 4096


@dataclass(slots=True)
class Answering:
    answers: int = 0
    clients: set[int] = field(default_factory=set)


class UndeclaredServiceDetector:
    fields = reports(
        {
            "traffic.undeclared_service": {"source_ip", "destination_ip", "destination_port", "service.declared"}
            | {"service.declared_ports", "service.answers", "service.clients"}
        }
    )

    """A registered address answering a TCP handshake (SYN-ACK) on a port: declared or not."""

    def __init__(self, registered: np.ndarray) -> None:
        self.registered = registered
        self.services: BoundedTable[tuple[int, int], Answering] = BoundedTable(Answering)

    def feed(self, p: Packets) -> None:
        if not self.registered.size:
            return
        idx = np.flatnonzero(p.tcp & ((p.flags & (SYN | ACK)) == (SYN | ACK)))
        if not idx.size:
            return
        idx = idx[np.isin(p.src[idx], self.registered)]
        g = group(p.src[idx], p.sport[idx])
        clients = p.dst[idx][g.order]
        bounds = [*g.starts.tolist(), int(idx.size)]
        for n, ((host, port), count) in enumerate(zip(g.rows(), g.counts.tolist(), strict=True)):
            svc = self.services.get((host, port))
            if svc is not None:
                svc.answers += count
                if len(svc.clients) < MAX_CLIENTS:
                    svc.clients.update(clients[bounds[n] : bounds[n + 1]].tolist())

    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        out: list[tuple[float, Observation]] = []
        for (h, port), svc in top_keys(self.services.items(), lambda s: s.answers):
            host = book.text(h)
            data = {
                "source_ip": ctx.ips(svc.clients),
                "destination_ip": host,
                "destination_port": port,
                "service.declared": port in book.declared.get(h, set()),
                "service.declared_ports": sorted(book.declared.get(h, set())),
                "service.answers": svc.answers,
                "service.clients": len(svc.clients),
            }
            obs = ctx.observation("traffic.undeclared_service", book.attribute(h), port_target(host, port), data)
            out.append((svc.answers, obs))
        return largest(out, len(self.services))


class BruteForceDetector:
    """Connection attempts to login services per (client, server, port); failures come from payloads."""

    fields = reports(
        {
            "traffic.bruteforce": {"source_ip", "destination_ip", "destination_port", "login.service"}
            | {"login.connections", "login.connections_peak_per_minute", "login.failures"}
            | {"login.failures_peak_per_minute", "login.duration_s"}
        }
    )

    def __init__(self) -> None:
        self.attempts = ActivityTable()
        self.failures: BoundedTable[tuple[int, ...], Activity] = BoundedTable(Activity)
        self._ports = np.array(sorted(CONNECTION_COUNTED), np.int64)

    def feed(self, p: Packets) -> None:
        syn = p.tcp & ((p.flags & (SYN | ACK | RST)) == SYN)
        idx = np.flatnonzero(syn & np.isin(p.dport, self._ports))
        if idx.size:
            self.attempts.track([p.src[idx], p.dst[idx], p.dport[idx]], p.ts[idx])

    def failure(self, client: int, server: int, port: int, ts: float) -> None:
        act = self.failures.get((client, server, port))
        if act is not None:
            act.add(ts, ts, 1)
            act.add_bin(1, int(ts), 1)
            act.add_bin(60, int(ts // 60), 1)

    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        counts: dict[tuple[int, ...], int] = {k: a.count for k, a in self.attempts.items()}
        for k, a in self.failures.items():
            counts[k] = counts.get(k, 0) + a.count
        keys = [k for k, _ in top_keys(counts.items(), float)]
        out: list[tuple[float, Observation]] = []
        for key in keys:
            c, s, port = key
            attempts = self.attempts.get(key) or Activity()
            failures = self.failures.get(key) or Activity()
            client, server = book.text(c), book.text(s)
            data = {
                "source_ip": client,
                "destination_ip": server,
                "destination_port": port,
                "login.service": LOGIN_SERVICES.get(port, "other"),
                "login.connections": attempts.count,
                "login.connections_peak_per_minute": attempts.peak_per_minute,
                "login.failures": failures.count,
                "login.failures_peak_per_minute": failures.peak_per_minute,
                "login.duration_s": round(max(attempts.duration, failures.duration), 3),
            }
            obs = ctx.observation(
                "traffic.bruteforce", book.attribute(s, c), f"{client} -> {port_target(server, port)}", data
            )
            out.append((attempts.count + failures.count, obs))
        return largest(out, len(counts))
