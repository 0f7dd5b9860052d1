"""Send what is due: owner digests over mail and webhooks, with retries, throttling and a sent-ledger."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sentinel.findings.policy import FindingsSettings, is_overdue
from sentinel.models import FindingStatus
from sentinel.models.finding import ACTIVE_STATUSES
from sentinel.notify import render
from sentinel.notify.channels import DeliveryError, post_webhook, send_mail
from sentinel.notify.digest import Digest, Ledger, due_digests, recipients
from sentinel.notify.robots import ROBOTS
from sentinel.notify.settings import NotifySettings
from sentinel.registry.models import Registry
from sentinel.store import SqliteStore

if TYPE_CHECKING:
    from sentinel.engine.rule import Rule

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    digest: Digest
    channel: str
    subject: str
    error: str | None = None


@dataclass
class NotifyReport:
    sent: list[Delivery] = field(default_factory=list)
    failed: list[Delivery] = field(default_factory=list)
    planned: list[Delivery] = field(default_factory=list)


class Notifier:
    def __init__(
        self,
        settings: NotifySettings,
        registry: Registry,
        store: SqliteStore,
        sleep: Callable[[float], None] = time.sleep,
        policy: FindingsSettings | None = None,
        rules: Mapping[str, Rule] | None = None,
    ) -> None:
        """`policy`: the findings SLA; given, findings past their due date are escalated to their owners once
        (an "overdue" event in the next digest). `sentinel run` and `sentinel notify` pass `settings.findings`."""
        self.policy = policy
        self.rules = rules  # rule id → Rule, for the Chinese text of custom rules (default: the shipped ones)
        self.settings = settings
        self.registry = registry
        self.store = store
        self.ledger = Ledger(store.connection)
        self._sleep = sleep

    def due(self, now: datetime) -> list[Digest]:
        targets = recipients(self.registry, [h.department for h in self.settings.webhooks])
        if self.settings.smtp is None:
            targets = [t for t in targets if not t.key.startswith("mail:")]
        findings = self.store.list_findings(
            statuses=[*ACTIVE_STATUSES, FindingStatus.RESOLVED],
            system_ids=[s.id for s in self.registry.systems],
        )
        policy = self.policy
        overdue = frozenset(f.id for f in findings if policy is not None and is_overdue(f, policy, now))
        return due_digests(
            self.ledger,
            targets,
            findings,
            now,
            self.settings.immediate_severity,
            timedelta(hours=self.settings.digest_hours),
            self.settings.max_per_hour,
            overdue,
        )

    def run(self, now: datetime, dry_run: bool = False) -> NotifyReport:
        report = NotifyReport()
        lang = self.settings.language
        for digest in self.due(now):
            key = digest.recipient.key
            subject = render.subject(digest, self.registry, lang)
            channel = "smtp" if key.startswith("mail:") else self.settings.webhooks[int(key[5:])].format
            delivery = Delivery(digest, channel, subject)
            if dry_run:
                report.planned.append(delivery)
                continue
            try:
                self._deliver_with_retries(digest, subject)
            except DeliveryError as exc:
                delivery.error = str(exc)
                report.failed.append(delivery)
                log.warning("notification to %s not delivered: %s", key, exc)
                continue
            with self.store.transaction():
                self.ledger.record(digest, channel, now)
            report.sent.append(delivery)
        return report

    def _deliver_with_retries(self, digest: Digest, subject: str) -> None:
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            try:
                self._deliver(digest, subject)
                return
            except DeliveryError:
                if attempt == attempts - 1:
                    raise
                self._sleep(self.settings.retry_backoff * 2**attempt)

    def _deliver(self, digest: Digest, subject: str) -> None:
        key, lang = digest.recipient.key, self.settings.language
        if key.startswith("mail:"):
            assert self.settings.smtp is not None
            send_mail(self.settings.smtp, key[5:], subject, render.plain_text(digest, self.registry, lang, self.rules))
            return
        hook = self.settings.webhooks[int(key[5:])]
        robot = ROBOTS.get(hook.format)
        body = robot(digest, self.registry, lang, self.rules) if robot else render.as_json(digest, self.registry, lang)
        post_webhook(hook, body)
