"""Push findings at or above a severity straight to Alertmanager (API v2), without going through Prometheus.

Alertmanager forgets an alert once its `endsAt` passes, so every delivery re-sends each alert still active with
`endsAt` pushed `ends_after` seconds ahead (and, with nothing queued, every `resend_every` seconds), and a finding
that resolves (or is suppressed) is sent once more with `endsAt` = now, which resolves it at once. The alert's
identity is its label set, which includes the finding id (and the site and vantage that observed it), so re-sends
update the same alert instead of making new ones: a resend after a retry or a crash is never a second alert.

Through the outbox (`sentinel run`, `sentinel sinks ship`) the set of active alerts is kept in the store
(`sink_state`), committed with each delivery, so a restart neither re-fires what was resolved nor forgets what is
firing. `publish(outcome)` delivers one sweep's changes directly, with the active set in memory.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from sentinel.findings.tracker import ApplyResult
from sentinel.models import Finding, FindingStatus, Severity
from sentinel.sinks.base import Delivery, EncodeContext, Entry, FindingChange, OutboxSink, Queued, SweepOutcome
from sentinel.sinks.outbox import dumps
from sentinel.sinks.settings import SinkOptions

log = logging.getLogger(__name__)

ALERT_NAME = "SentinelFinding"
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class AlertmanagerError(OSError):
    """Alertmanager could not be reached or refused the alerts (an OSError, so a sweep logs it and goes on)."""


class AlertmanagerRefusedError(AlertmanagerError):
    """Alertmanager answered with an HTTP error status (`status`): the shipper classifies it like any sink's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AlertmanagerSettings(SinkOptions):
    url: str = Field(description="Alertmanager base URL, e.g. http://127.0.0.1:9093")
    min_severity: Severity = Severity.HIGH
    ends_after: float = Field(default=4 * 3600, gt=0, description="seconds an alert stays firing without a re-send")
    timeout: float = Field(default=10.0, gt=0, le=120)
    include_acknowledged: bool = True
    labels: dict[str, str] = Field(default_factory=dict, description="extra static labels, e.g. {team: soc}")
    generator_url: str | None = Field(default=None, description="link shown in Alertmanager (e.g. your Grafana)")
    resend_every: float = Field(default=300.0, gt=0, description="seconds between re-sends of the active alerts")
    batch_size: int = Field(default=500, ge=1, le=10_000, description="finding changes per POST")

    @model_validator(mode="after")
    def _resend_before_expiry(self) -> AlertmanagerSettings:
        if self.resend_every >= self.ends_after:
            raise ValueError(f"resend_every ({self.resend_every}) must be below ends_after ({self.ends_after})")
        return self

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


ACTIVE = "alert:"  # sink_state keys of the active alerts; "resent_at" is the last re-send


class AlertmanagerSink(OutboxSink):
    name = "alertmanager"
    title = "Alertmanager"
    Options = AlertmanagerSettings

    def __init__(
        self, options: Mapping[str, object] | AlertmanagerSettings, clock: Callable[[], datetime] = utcnow
    ) -> None:
        super().__init__(options)
        self.settings: AlertmanagerSettings = self.options  # type: ignore[assignment]
        self.clock = clock
        self._memory: dict[str, str] = {}  # the active set of `publish` (direct use, without the outbox)

    def describe(self) -> str:
        return f"alertmanager {self.settings.url}"

    def _wanted(self, finding: Finding) -> bool:
        if not finding.severity.at_least(self.settings.min_severity):
            return False
        if finding.status == FindingStatus.ACKNOWLEDGED:
            return self.settings.include_acknowledged
        return finding.status.is_active

    def alert(self, finding: Finding, ends_at: datetime | None = None) -> dict[str, Any]:
        labels = {
            **self.settings.labels,
            "alertname": ALERT_NAME,
            "finding_id": finding.id,
            "rule_id": finding.rule_id,
            "system": finding.system_id,
            "severity": finding.severity.value,
            "category": finding.category,
        }
        if finding.vantage is not None:  # a finding from before sites keeps the label set it fired with
            labels.update(site=finding.site, vantage=finding.vantage.value)
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
        }
        if ends_at is not None:
            alert["endsAt"] = _iso(ends_at)
        if self.settings.generator_url:
            alert["generatorURL"] = self.settings.generator_url
        return alert

    # -- encoding (inside the store's write transaction) ------------------------------------------
    def _entry(self, finding: Finding) -> Entry | None:
        if not finding.severity.at_least(self.settings.min_severity):
            return None
        body = {
            "alert": self.alert(finding),
            "firing": self._wanted(finding),
            # resolved findings are cleared even when not known as active (e.g. fired before the outbox existed)
            "resolved": finding.status == FindingStatus.RESOLVED,
        }
        return Entry("alert", finding.id, dumps(body), coalesce=True, droppable=False)

    def encode_findings(self, changes: Sequence[FindingChange], ctx: EncodeContext) -> list[Entry]:
        return [e for c in changes if (e := self._entry(c.finding)) is not None]

    def encode_rekeyed(
        self, moved: Sequence[tuple[str, Finding]], ctx: EncodeContext, state: Mapping[str, str]
    ) -> list[Entry]:
        """Adopted findings from before sites: the alert under the former id and label set is resolved (it would
        otherwise be re-sent for ever), and the finding fires again under its new labels if it still should."""
        out: list[Entry] = []
        for former, finding in moved:
            if not finding.severity.at_least(self.settings.min_severity):
                continue
            sent = state.get(ACTIVE + former)
            old = json.loads(sent) if sent else self.alert(replace(finding, id=former, site="", vantage=None))
            body = {"alert": old, "firing": False, "resolved": True}
            out.append(Entry("alert", former, dumps(body), coalesce=True, droppable=False))
            if (entry := self._entry(finding)) is not None:
                out.append(entry)
        return out

    # -- delivery ---------------------------------------------------------------------------------
    def _alerts(
        self, rows: Sequence[Queued], state: Mapping[str, str]
    ) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
        """Every alert to post (active ones re-sent, changes applied) and the state change that follows."""
        firing = {k[len(ACTIVE) :]: v for k, v in state.items() if k.startswith(ACTIVE)}
        resolved: dict[str, str] = {}
        for row in rows:
            item = json.loads(row.body)
            alert = dumps(item["alert"])
            if item["firing"]:
                firing[row.doc_id] = alert
                resolved.pop(row.doc_id, None)
            elif row.doc_id in firing or item["resolved"]:
                firing.pop(row.doc_id, None)
                resolved[row.doc_id] = alert
        now = self.clock()
        ends = _iso(now + timedelta(seconds=self.settings.ends_after))
        alerts = [{**json.loads(a), "endsAt": ends} for a in firing.values()]
        alerts += [{**json.loads(a), "endsAt": _iso(now)} for a in resolved.values()]
        change: dict[str, str | None] = {ACTIVE + fid: alert for fid, alert in firing.items()}
        change.update({ACTIVE + fid: None for fid in resolved})
        change["resent_at"] = str(now.timestamp())
        return alerts, change

    def deliver(self, rows: Sequence[Queued], state: Mapping[str, str]) -> Delivery:
        alerts, change = self._alerts(rows, state)
        try:
            if alerts:
                self._post(alerts)
        except AlertmanagerRefusedError as exc:
            return Delivery(statuses=[(exc.status, str(exc))] * len(rows))
        except AlertmanagerError as exc:
            return Delivery(unreachable=str(exc))
        return Delivery(statuses=[(200, "")] * len(rows), state=change)

    def maintain(self, state: Mapping[str, str], now: float) -> Delivery | None:
        """Re-send the active alerts every `resend_every` seconds, so they outlive no sweep and expire never."""
        if not any(k.startswith(ACTIVE) for k in state):
            return None
        if now - float(state.get("resent_at", "0")) < self.settings.resend_every:
            return None
        result = self.deliver([], state)
        return result if result.unreachable is not None else Delivery(state={"resent_at": str(now)})

    # -- direct use -------------------------------------------------------------------------------
    def publish(self, outcome: SweepOutcome) -> None:
        """Deliver one sweep's changes now (raises AlertmanagerError), with the active set in memory."""
        changes = outcome.changes
        found = [*changes.new, *changes.updated, *changes.reopened, *changes.resolved]
        entries = [e for f in found if (e := self._entry(f)) is not None]
        rows = [Queued(n, e.stream, e.doc_id, e.body, 0) for n, e in enumerate(entries)]
        alerts, change = self._alerts(rows, self._memory)
        if alerts:
            self._post(alerts)
        for key, value in change.items():
            if value is None:
                self._memory.pop(key, None)
            else:
                self._memory[key] = value

    def resend(self) -> None:
        """Re-send every active alert (for long-running processes between sweeps)."""
        self.publish(SweepOutcome(0, self.clock(), self.clock(), [], ApplyResult()))

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
            raise AlertmanagerRefusedError(
                exc.code, f"alertmanager {url}: HTTP {exc.code}: {detail or exc.reason}"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise AlertmanagerError(f"alertmanager {url}: unreachable: {reason}") from None
        log.info("sent %d alert(s) to %s", len(alerts), url)
