"""notify/notifier.py: owner notifications against a real SMTP server (aiosmtpd, STARTTLS + AUTH) and a real webhook
receiver (the `hooks` fixture): who gets what and when, retries, throttling, and no command without a channel."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import ssl
from collections.abc import Iterator
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from sentinel.cli.main import main
from sentinel.demo.certs import TestCA
from sentinel.demo.estate import free_port
from sentinel.models import Severity
from sentinel.notify.notifier import Notifier
from sentinel.notify.settings import NotifySettings
from sentinel.store import SqliteStore
from tests.support.notify_lab import HOST, REGISTRY, T0, Hooks, seed


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        self.messages.append(
            (envelope.mail_from or "", list(envelope.rcpt_tos), email.message_from_bytes(envelope.content))
        )
        return "250 OK"


def _auth(server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"sentinel" and data.password == b"s3cret"
    return AuthResult(success=ok)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[Mailbox, int, Path]]:
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue("smtp", [HOST])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert.cert, cert.key)
    box = Mailbox()
    port = free_port(HOST)
    controller = Controller(
        box,
        hostname=HOST,
        port=port,
        tls_context=tls,
        require_starttls=True,
        auth_require_tls=True,
        authenticator=_auth,
        auth_required=True,
    )
    controller.start()
    try:
        yield box, port, ca.files.cert
    finally:
        controller.stop()


def settings(port: int, ca: Path, hook_url: str | None = None, **extra: Any) -> NotifySettings:
    data: dict[str, Any] = {
        "smtp": {
            "host": HOST,
            "port": port,
            "username": "sentinel",
            "password": "s3cret",
            "sender": "soc@x.cn",
            "ca_file": str(ca),
        },
        "retry_backoff": 0,
        **extra,
    }
    if hook_url:
        data["webhooks"] = [
            {"url": hook_url + "/soc", "format": "generic", "secret": "k"},
            {"url": hook_url + "/robot?key=abc", "format": "wecom", "department": "乙局"},
        ]
    return NotifySettings.model_validate(data)


def test_owners_get_only_their_own_systems_once(tmp_path: Path, smtp: tuple[Mailbox, int, Path], hooks: str) -> None:
    box, port, ca = smtp
    store = SqliteStore(tmp_path / "s.db")
    seed(store, T0, {("a1", "port_high_risk_closed"): True, ("b1", "tls_cert_not_expired"): True})
    report = Notifier(settings(port, ca, hooks), REGISTRY, store, sleep=lambda _: None).run(T0)
    assert not report.failed and len(report.sent) == 4
    mails = {rcpts[0]: msg for _, rcpts, msg in box.messages}
    assert set(mails) == {"a@x.cn", "b@x.cn"}
    body_a = mails["a@x.cn"].get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "系统A" in body_a and "系统B" not in body_a and "高危端口开放" in body_a and "整改建议" in body_a
    assert "甲局" in str(email.header.make_header(email.header.decode_header(mails["a@x.cn"]["Subject"])))
    by_path = {p.split("?")[0]: (h, b) for p, h, b in Hooks.received}
    soc_headers, soc_body = by_path["/soc"]
    expected = (
        "sha256="
        + hmac.new(b"k", soc_headers["X-Sentinel-Timestamp"].encode() + b"." + soc_body, hashlib.sha256).hexdigest()
    )
    assert soc_headers["X-Sentinel-Signature"] == expected
    assert {e["system_id"] for e in json.loads(soc_body)["events"]} == {"a1", "b1"}  # the SOC hook sees all
    robot = json.loads(by_path["/robot"][1])
    assert (
        robot["msgtype"] == "markdown"
        and "b1" in robot["markdown"]["content"]
        and "a1" not in robot["markdown"]["content"]
    )
    store.close()
    # A restart (new store handle, new notifier) sends nothing again.
    store = SqliteStore(tmp_path / "s.db")
    again = Notifier(settings(port, ca, hooks), REGISTRY, store).run(T0 + timedelta(hours=25))
    assert again.sent == [] and len(box.messages) == 2


def test_immediate_for_critical_digest_for_the_rest_and_resolutions(
    tmp_path: Path, smtp: tuple[Mailbox, int, Path]
) -> None:
    box, port, ca = smtp
    store = SqliteStore(tmp_path / "s.db")
    notifier = Notifier(settings(port, ca), REGISTRY, store)
    seed(store, T0, {("a1", "port_high_risk_closed"): True})
    assert len(notifier.run(T0).sent) == 1  # first digest for a@x.cn
    seed(store, T0 + timedelta(hours=1), {("a2", "port_undeclared_closed"): True})
    assert notifier.run(T0 + timedelta(hours=1)).sent == []  # medium: waits for the daily digest
    seed(store, T0 + timedelta(hours=2), {("a2", "tls_cert_not_expired"): True})
    (urgent,) = notifier.run(T0 + timedelta(hours=2)).sent
    assert urgent.digest.immediate and [e.finding.rule_id for e in urgent.digest.events] == ["tls_cert_not_expired"]
    seed(store, T0 + timedelta(hours=3), {("a1", "port_high_risk_closed"): False})
    (daily,) = notifier.run(T0 + timedelta(hours=24, minutes=1)).sent
    kinds = sorted((e.kind, e.finding.rule_id) for e in daily.digest.events)
    assert kinds == [("new", "port_undeclared_closed"), ("resolved", "port_high_risk_closed")]
    assert len(box.messages) == 3


def test_failures_are_retried_later_and_dry_run_sends_nothing(tmp_path: Path, hooks: str) -> None:
    store = SqliteStore(tmp_path / "s.db")
    seed(store, T0, {("b1", "tls_cert_not_expired"): True})
    cfg = NotifySettings.model_validate({"webhooks": [{"url": hooks + "/soc"}], "retries": 1, "retry_backoff": 0})
    planned = Notifier(cfg, REGISTRY, store).run(T0, dry_run=True)
    assert len(planned.planned) == 1 and Hooks.received == []
    Hooks.fail_next = 2  # both attempts of this run fail
    failed = Notifier(cfg, REGISTRY, store).run(T0)
    assert len(failed.failed) == 1 and "HTTP 503" in str(failed.failed[0].error)
    assert len(Notifier(cfg, REGISTRY, store).run(T0 + timedelta(minutes=5)).sent) == 1
    assert len(Hooks.received) == 1


def test_throttle_caps_messages_per_hour(tmp_path: Path, hooks: str) -> None:
    store = SqliteStore(tmp_path / "s.db")
    cfg = NotifySettings.model_validate({"webhooks": [{"url": hooks + "/soc"}], "max_per_hour": 2})
    sent = 0
    for i, rule in enumerate(["tls_cert_not_expired", "tls_protocol_modern", "port_high_risk_closed"]):
        seed(store, T0 + timedelta(minutes=i), {("a1", rule): True})
        sent += len(
            Notifier(cfg.model_copy(update={"immediate_severity": Severity.HIGH}), REGISTRY, store)
            .run(T0 + timedelta(minutes=i))
            .sent
        )
    assert sent == 2


def test_cli_requires_a_channel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reg = tmp_path / "r.yaml"
    reg.write_text("scope: {allow: [10.0.0.0/8]}\nsystems: []\n")
    assert main(["notify", "--registry", str(reg), "--store", str(tmp_path / "s.db")]) == 2
    assert "no channel configured" in capsys.readouterr().err
