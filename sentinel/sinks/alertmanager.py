"""Push findings at or above a severity straight to Alertmanager (API v2), without going through Prometheus.

Alertmanager forgets an alert once its `endsAt` passes, so every publish re-sends each alert still active with
`endsAt` pushed `ends_after` seconds ahead, and a finding that resolves (or is suppressed) is sent once more with
`endsAt` = now, which resolves it at once. The alert's identity is its label set, which includes the finding id,
so re-sends update the same alert instead of making new ones.

Findings the sink has not seen since the process started are picked up again when a sweep next detects them
(every sweep reports every finding it still sees); until then Alertmanager keeps the last one it got until
`endsAt`, so choose `ends_after` above the sweep interval.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sentinel.models import Finding, FindingStatus, Severity
from sentinel.sinks.base import SweepOutcome

log = logging.getLogger(__name__)

ALERT_NAME = "SentinelFinding"
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class AlertmanagerError(OSError):
    """Alertmanager could not be reached or refused the alerts (an OSError, so a sweep logs it and goes on)."""


class AlertmanagerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Alertmanager base URL, e.g. http://127.0.0.1:9093")
    min_severity: Severity = Severity.HIGH
    ends_after: float = Field(default=4 * 3600, gt=0, description="seconds an alert stays firing without a re-send")
    timeout: float = Field(default=10.0, gt=0, le=120)
    include_acknowledged: bool = True
    labels: dict[str, str] = Field(default_factory=dict, description="extra static labels, e.g. {team: soc}")
    generator_url: str | None = Field(default=None, description="link shown in Alertmanager (e.g. your Grafana)")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"'{value}' is not an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not LABEL_NAME.match(name)]
        if bad:
            raise ValueError(f"invalid label name(s) {', '.join(map(repr, bad))}: use letters, digits and '_'")
        return value


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utcnow() -> datetime:
    return datetime.now(UTC)


class AlertmanagerSink:
    name = "alertmanager"

    def __init__(self, options: dict[str, Any], clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = AlertmanagerSettings.model_validate(options)
        self.clock = clock
        self._firing: dict[str, Finding] = {}

    def _wanted(self, finding: Finding) -> bool:
        if not finding.severity.at_least(self.settings.min_severity):
            return False
        if finding.status == FindingStatus.ACKNOWLEDGED:
            return self.settings.include_acknowledged
        return finding.status.is_active

    def alert(self, finding: Finding, ends_at: datetime) -> dict[str, Any]:
        labels = {
            **self.settings.labels,
            "alertname": ALERT_NAME,
            "finding_id": finding.id,
            "rule_id": finding.rule_id,
            "system": finding.system_id,
            "severity": finding.severity.value,
            "category": finding.category,
        }
        annotations = {
            "summary": f"{finding.system_id}: {finding.title}",
            "target": finding.target,
            "status": finding.status.value,
            "controls": ", ".join(finding.controls),
            "remediation": finding.remediation,
            "first_seen": _iso(finding.first_seen),
        }
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": {k: v for k, v in annotations.items() if v},
            "startsAt": _iso(finding.first_seen),
            "endsAt": _iso(ends_at),
        }
        if self.settings.generator_url:
            alert["generatorURL"] = self.settings.generator_url
        return alert

    def publish(self, outcome: SweepOutcome) -> None:
        changes = outcome.changes
        resolved: dict[str, Finding] = {}
        for finding in (*changes.new, *changes.updated, *changes.reopened):
            if self._wanted(finding):
                self._firing[finding.id] = finding
            elif finding.id in self._firing:  # suppressed, or acknowledged with include_acknowledged off
                resolved[finding.id] = self._firing.pop(finding.id)
        for finding in changes.resolved:
            self._firing.pop(finding.id, None)
            if finding.severity.at_least(self.settings.min_severity):
                resolved[finding.id] = finding  # also after a restart, so Alertmanager clears it now
        self.send(resolved.values())

    def resend(self) -> None:
        """Re-send every active alert (for long-running processes between sweeps)."""
        self.send(())

    def send(self, resolved: Iterable[Finding]) -> None:
        now = self.clock()
        ends = now + timedelta(seconds=self.settings.ends_after)
        alerts = [self.alert(f, ends) for f in self._firing.values()]
        alerts += [self.alert(f, now) for f in resolved]
        if alerts:
            self._post(alerts)

    def _post(self, alerts: list[dict[str, Any]]) -> None:
        url = f"{self.settings.url}/api/v2/alerts"
        request = urllib.request.Request(
            url,
            data=json.dumps(alerts, ensure_ascii=False).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", errors="replace").strip()
            raise AlertmanagerError(f"alertmanager {url}: HTTP {exc.code}: {detail or exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise AlertmanagerError(f"alertmanager {url}: unreachable: {reason}") from None
        log.info("sent %d alert(s) to %s", len(alerts), url)

    def close(self) -> None:
        return None
