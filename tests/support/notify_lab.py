"""For the notification tests: a registry of three systems in two departments, a webhook receiver that records
what it is sent (and can refuse), and findings driven through the real tracker."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from sentinel.engine.rule import Rule
from sentinel.engine.ruleset import Verdict
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Finding, FindingStatus
from sentinel.notify.digest import Digest, Event, Recipient
from sentinel.registry.loader import load_registry_text
from sentinel.store import SqliteStore
from tests.support.engine_lab import shipped_rules

HOST = "127.79.5.1"
T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)

REGISTRY = load_registry_text("""
scope: {allow: ["10.0.0.0/8"]}
systems:
  - {id: a1, name: 系统A, owner: {department: 甲局, email: a@x.cn}, tier: city, mlps_level: 3,
     endpoints: [{host: 10.0.0.1, ports: [22]}]}
  - {id: a2, name: 系统A2, owner: {department: 甲局, email: a@x.cn}, tier: city, mlps_level: 2,
     endpoints: [{host: 10.0.0.2, ports: [22]}]}
  - {id: b1, name: 系统B, owner: {department: 乙局, email: b@x.cn}, tier: district, mlps_level: 2,
     endpoints: [{host: 10.0.1.1, ports: [22]}]}
""")


class Hooks(BaseHTTPRequestHandler):
    """A webhook receiver: records (path, headers, body) of each POST; answers 503 while `fail_next` lasts."""

    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []
    fail_next: ClassVar[int] = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Hooks.fail_next:
            Hooks.fail_next -= 1
            self.send_response(503)
            self.end_headers()
            return
        Hooks.received.append((self.path, dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errcode": 0, "errmsg": "ok"}')

    def log_message(self, *args: object) -> None:
        return


@contextlib.contextmanager
def serving_hooks() -> Iterator[str]:
    """A fresh `Hooks` receiver on HOST; yields its base URL."""
    Hooks.received, Hooks.fail_next = [], 0
    server = ThreadingHTTPServer((HOST, 0), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()


def seed(store: SqliteStore, at: datetime, present: dict[tuple[str, str], bool]) -> None:
    """Drive findings through the real tracker: (system, rule) → present?"""
    rules = shipped_rules()
    verdicts = [
        Verdict(rules[rule], sid, f"{sid}:port", on, {"port": 1} if on else {}) for (sid, rule), on in present.items()
    ]
    FindingTracker(store).apply(verdicts, at)


def rule_finding(rule: Rule, i: int = 0, status: FindingStatus = FindingStatus.OPEN) -> Finding:
    """A finding of `rule` on system b1 as the tracker makes it: the rule's English words."""
    return Finding(
        id=f"{i:064x}",
        rule_id=rule.id,
        title=rule.title,
        severity=rule.severity,
        category=rule.category,
        system_id="b1",
        target=f"10.0.1.1:{443 + i}",
        status=status,
        first_seen=T0,
        last_seen=T0,
        occurrences=1,
        remediation=rule.remediation,
    )


def rule_digest(*rules: Rule) -> Digest:
    """A digest for 乙局's robot with one new finding of each rule."""
    recipient = Recipient("hook:0", frozenset({"乙局"}), frozenset({"b1"}))
    return Digest(recipient, [Event("new", rule_finding(r, i)) for i, r in enumerate(rules)])
