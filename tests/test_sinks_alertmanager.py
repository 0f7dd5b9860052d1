"""The Alertmanager sink against a real Alertmanager (Debian `prometheus-alertmanager`) on loopback, with a
webhook receiver that records what Alertmanager notifies: firing, re-sent while active, resolved with endsAt."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from sentinel.demo.estate import free_port
from sentinel.findings.tracker import ApplyResult
from sentinel.models import Finding, FindingStatus, Severity
from sentinel.models.finding import fingerprint
from sentinel.sinks.alertmanager import AlertmanagerError, AlertmanagerSink
from sentinel.sinks.base import SweepOutcome
from tests.netns import require_tool
from tests.support.metrics_stack import LOOPBACK, http_get, stop, wait_until

NOW = datetime.now(UTC).replace(microsecond=0)


class Webhook:
    """Records Alertmanager's webhook notifications."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.notifications.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return None

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def statuses(self, finding_id: str) -> list[str]:
        return [
            alert["status"]
            for n in self.notifications
            for alert in n["alerts"]
            if alert["labels"].get("finding_id") == finding_id
        ]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, Webhook]]:
    binary = require_tool("prometheus-alertmanager")
    hook = Webhook()
    config = {
        "route": {
            "receiver": "hook",
            "group_by": ["finding_id"],
            "group_wait": "0s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "hook", "webhook_configs": [{"url": hook.url, "send_resolved": True}]}],
    }
    (tmp_path / "am.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port(LOOPBACK)
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_until("alertmanager ready", lambda: http_get(url + "/-/ready", 1)[0] == 200, proc=proc)
        yield url, hook
    finally:
        stop(proc)
        hook.server.shutdown()


def finding(rule: str, severity: Severity, status: FindingStatus = FindingStatus.OPEN) -> Finding:
    target = "https://portal.example.gov.cn/"
    return Finding(
        id=fingerprint(rule, "city-portal", target),
        rule_id=rule,
        title=f"{rule} on the portal",
        severity=severity,
        category="tls",
        system_id="city-portal",
        target=target,
        status=status,
        first_seen=NOW - timedelta(minutes=5),
        last_seen=NOW,
        occurrences=1,
        controls=["mlps:8.1.4.3"],
        remediation="Renew the certificate.",
    )


def outcome(sweep: int, **changes: list[Finding]) -> SweepOutcome:
    return SweepOutcome(sweep, NOW, NOW, [], ApplyResult(**changes))


def active_alerts(url: str) -> dict[str, dict[str, Any]]:
    status, body = http_get(url + "/api/v2/alerts?active=true&silenced=false&inhibited=false")
    assert status == 200
    return {a["labels"]["finding_id"]: a for a in json.loads(body)}


def test_findings_fire_are_resent_while_active_and_resolve(alertmanager: tuple[str, Webhook]) -> None:
    url, hook = alertmanager
    clock = [NOW]
    sink = AlertmanagerSink(
        {"url": url, "min_severity": "high", "ends_after": 600, "labels": {"team": "soc"}}, lambda: clock[0]
    )
    critical, low = finding("tls_cert_not_expired", Severity.CRITICAL), finding("hsts_missing", Severity.LOW)

    sink.publish(outcome(1, new=[critical, low]))
    alerts = active_alerts(url)
    assert set(alerts) == {critical.id}  # below min_severity is never sent
    first = alerts[critical.id]
    assert first["labels"] == {
        "alertname": "SentinelFinding",
        "finding_id": critical.id,
        "rule_id": "tls_cert_not_expired",
        "system": "city-portal",
        "severity": "critical",
        "category": "tls",
        "site": "default",  # who observed it: alerts from two vantages never merge
        "vantage": "internal",
        "team": "soc",
    }
    assert first["annotations"]["target"] == "https://portal.example.gov.cn/"
    wait_until("firing notification", lambda: "firing" in hook.statuses(critical.id))

    # The next sweep still sees it: the same alert is re-sent with endsAt pushed forward.
    clock[0] = NOW + timedelta(minutes=2)
    sink.publish(outcome(2, updated=[critical]))
    again = active_alerts(url)
    assert set(again) == {critical.id}
    assert again[critical.id]["endsAt"] > first["endsAt"]
    assert again[critical.id]["startsAt"] == first["startsAt"]

    # A sweep with no change for it (e.g. could not observe) still re-sends what is firing.
    clock[0] = NOW + timedelta(minutes=4)
    sink.publish(outcome(3))
    assert active_alerts(url)[critical.id]["endsAt"] > again[critical.id]["endsAt"]

    # Resolved: sent with endsAt = now, Alertmanager drops it and notifies the resolution.
    clock[0] = datetime.now(UTC)
    sink.publish(outcome(4, resolved=[replace(critical, status=FindingStatus.RESOLVED)]))
    assert active_alerts(url) == {}
    wait_until("resolved notification", lambda: "resolved" in hook.statuses(critical.id))


def test_suppressed_finding_is_resolved_in_alertmanager(alertmanager: tuple[str, Webhook]) -> None:
    url, _ = alertmanager
    sink = AlertmanagerSink({"url": url})
    high = finding("exposed_database_port", Severity.HIGH)
    sink.publish(outcome(1, new=[high]))
    assert set(active_alerts(url)) == {high.id}
    sink.publish(outcome(2, updated=[replace(high, status=FindingStatus.SUPPRESSED)]))
    assert active_alerts(url) == {}


def test_unreachable_alertmanager_is_a_clear_oserror() -> None:
    port = free_port(LOOPBACK)  # nothing listens there
    sink = AlertmanagerSink({"url": f"http://{LOOPBACK}:{port}", "timeout": 2})
    with pytest.raises(AlertmanagerError, match=rf"alertmanager http://127.0.0.1:{port}/api/v2/alerts: unreachable"):
        sink.publish(outcome(1, new=[finding("r", Severity.CRITICAL)]))


def test_alertmanager_rejection_names_the_status(alertmanager: tuple[str, Webhook]) -> None:
    url, _ = alertmanager
    sink = AlertmanagerSink({"url": url})
    # Settings refuse bad label names; slip one past them to see how a refusal from Alertmanager is reported.
    sink.settings = sink.settings.model_copy(update={"labels": {"bad label": "x"}})
    with pytest.raises(AlertmanagerError, match="HTTP 400"):
        sink.publish(outcome(1, new=[finding("r", Severity.CRITICAL)]))


def test_bad_options_are_rejected() -> None:
    with pytest.raises(ValidationError, match="not an http"):
        AlertmanagerSink({"url": "ftp://x"})
    with pytest.raises(ValidationError):
        AlertmanagerSink({"url": "http://127.0.0.1:9093", "min_severity": "urgent"})
    with pytest.raises(ValidationError, match="invalid label name"):
        AlertmanagerSink({"url": "http://127.0.0.1:9093", "labels": {"bad label": "x"}})
