"""Build `store_before_sites.sql`: a store as Sentinel wrote it before sites and vantages (issue 14), for the
upgrade test (tests/test_store_sites_upgrade.py). Run it with the code of before the change, not this tree's:

    mkdir /tmp/pre && git archive 29507d9 | tar -x -C /tmp/pre
    PYTHONPATH=/tmp/pre python tests/data/make_store_before_sites.py tests/data/store_before_sites.sql

It records, through that code's own paths: findings of a stateless rule (high-risk port, one acknowledged by an
operator, one resolved), of a rule with memory (a changed banner: engine state), the notification ledger for one
of them, an Alertmanager alert that was delivered (a stub Alertmanager on loopback) and Elasticsearch documents
still queued (the cluster was down). The output is the SQL text of the store (`sqlite3 .dump`), read by the test.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from sentinel.app import Sentinel
from sentinel.config.settings import Settings
from sentinel.findings.lifecycle import LifecycleEvent
from sentinel.models import Observation
from sentinel.notify.digest import Digest, Event, Ledger, Recipient
from sentinel.registry.loader import load_registry_text
from sentinel.sinks.shipper import Shipper

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
REGISTRY = """
scope: {allow: [10.20.0.0/24]}
systems:
  - id: city-portal
    name: 市政府门户网站
    owner: {department: 市大数据管理中心, email: ops@example.gov.cn}
    tier: city
    mlps_level: 3
    endpoints:
      - {host: 10.20.0.5, ports: [22, 443]}
"""


class _Alertmanager(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


def port(p: int, state: str, at: datetime) -> Observation:
    data = {"host": "10.20.0.5", "address": "10.20.0.5", "port": p, "protocol": "tcp", "state": state,
            "declared": False, "high_risk": True, "rtt_ms": 0.4, "method": "tcp-connect"}  # fmt: skip
    return Observation("port", "city-portal", f"10.20.0.5:{p}/tcp", at, "tcp_ports", data=data)


def banner(text: str, at: datetime) -> Observation:
    data = {"address": "10.20.0.5", "port": 22, "banner": text, "service": "ssh"}
    return Observation("banner", "city-portal", "10.20.0.5:22/tcp", at, "banners", data=data)


def main(out: Path) -> None:
    stub = HTTPServer(("127.0.0.1", 0), _Alertmanager)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "sentinel.db"
        settings = Settings(
            store=db,
            sinks={
                "elasticsearch": {"url": "http://127.0.0.1:9", "outbox_min_free_bytes": 0, "ship_observations": False},
                "alertmanager": {"url": f"http://127.0.0.1:{stub.server_port}", "min_severity": "high"},
            },
        )
        app = Sentinel(settings, registry=load_registry_text(REGISTRY), ship_inline=False)
        app.ingest(
            [port(3306, "open", T0), port(3389, "open", T0), port(6379, "open", T0), banner("SSH-2.0-OpenSSH_8.9", T0)],
            T0,
            "sweep",
        )
        t1 = T0 + timedelta(hours=1)
        app.ingest(
            [
                port(3306, "open", t1),
                port(3389, "open", t1),
                port(6379, "closed", t1),
                banner("SSH-2.0-dropbear_2020.81", t1),
            ],
            t1,
            "sweep",
        )
        by_target = {f.target: f for f in app.store.list_findings()}
        rdp = by_target["10.20.0.5:3389/tcp"]
        app.tracker.act(rdp, LifecycleEvent.ACKNOWLEDGE, "alice", "ticket OPS-42", t1 + timedelta(minutes=5))
        mysql = by_target["10.20.0.5:3306/tcp"]
        owner = Recipient("mail:ops@example.gov.cn", None, frozenset({"city-portal"}))
        Ledger(app.store.connection).record(Digest(owner, [Event("new", mysql)], immediate=True), "mail", t1)
        alertmanager = next(s for s in app.sinks if s.name == "alertmanager")
        report = Shipper(app.store, alertmanager).drain(timeout=5)
        assert report.remaining == 0, report
        app.close()
        with sqlite3.connect(db) as conn:
            out.write_text("\n".join(conn.iterdump()) + "\n", encoding="utf-8")
    stub.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
