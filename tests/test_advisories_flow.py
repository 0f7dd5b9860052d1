"""Early warnings end to end on one site: issued, matched by a real sweep, notified to the owner over real SMTP,
rectified and verified by a re-probe, withdrawn. The web server announces its nginx version like the real one."""

from __future__ import annotations

import email
import json
import os
import socket
import threading
from collections.abc import Iterator
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from sentinel.cli.main import main
from tests.netns import require
from tests.support.settings_files import write_config

HOST = "127.0.91.7"  # the web server; only this test uses it
SMTP_HOST = "127.0.91.8"
EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "advisory.yaml"
RULE = "advisory_2026_017"


class Announcing(BaseHTTPRequestHandler):
    """Answers every request, naming itself as `server` says (what an upgrade changes)."""

    server_header: ClassVar[str] = "nginx/1.26.2"

    def version_string(self) -> str:
        return Announcing.server_header

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.do_HEAD()

    def log_message(self, *_: Any) -> None:
        return


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def web() -> Iterator[None]:
    require(os.geteuid() == 0, "the banner probe reads web servers on their usual ports (80): needs root to bind")
    Announcing.server_header = "nginx/1.26.2"
    server = ThreadingHTTPServer((HOST, 80), Announcing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port(SMTP_HOST)
    controller = Controller(box, hostname=SMTP_HOST, port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def _config(tmp_path: Path, smtp_port: int) -> Path:
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        yaml.safe_dump(
            {
                "scope": {"allow": ["127.0.91.0/24"]},
                "systems": [
                    {
                        "id": "permits",
                        "name": "市行政审批门户",
                        "owner": {"department": "市行政审批局", "email": "permits@x.cn"},
                        "tier": "city",
                        "mlps_level": 3,
                        "endpoints": [{"host": HOST, "ports": [80]}],
                    }
                ],
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    return write_config(
        tmp_path,
        registry,
        site="city",
        collectors={"probes": ["banners"], "connect_timeout": 2, "per_target_rate": 50, "per_target_burst": 20},
        notify={"smtp": {"host": SMTP_HOST, "port": smtp_port, "starttls": False, "sender": "soc@x.cn"}},
    )


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_warning_finds_the_old_nginx_tells_its_owner_and_is_verified_after_upgrade(
    tmp_path: Path, web: None, mailbox: tuple[Mailbox, int], capsys: pytest.CaptureFixture[str]
) -> None:
    box, smtp_port = mailbox
    base = ["--config", str(_config(tmp_path, smtp_port))]
    assert main(["advisory", "issue", str(EXAMPLE), *base]) == 0
    assert main(["scan", *base]) in (0, 1)

    found = _json(capsys, ["findings", "list", "--format", "json", *base])
    hit = [f for f in found if f["rule_id"] == RULE]
    assert len(hit) == 1, found
    assert hit[0]["system_id"] == "permits" and hit[0]["site"] == "city" and hit[0]["severity"] == "medium"
    assert hit[0]["evidence"]["version"] == "1.26.2" and "2026-12-15T18:00+08:00" in hit[0]["remediation"]
    fid = hit[0]["id"]

    # the owner is told, in Chinese, with the warning's title and deadline
    assert main(["notify", *base]) == 0
    mails = [m for rcpts, m in box.messages if rcpts == ["permits@x.cn"]]
    assert len(mails) == 1
    body = mails[0].get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "预警通报 2026-017" in body and "整改时限 2026-12-15T18:00+08:00" in body

    progress = _json(capsys, ["advisory", "progress", "2026-017", "--format", "json", *base])
    assert progress["sites"] == [
        {
            "site": "city",
            "affected": 1,
            "acknowledged": 0,
            "rectified": 0,
            "verified": 0,
            "overdue": 0,
            "suppressed": 0,
            "stale": 0,
        }
    ]

    # the owner says it is fixed, but the server still announces 1.26.2: the re-probe keeps it open
    main(["findings", "rectify", fid, "--note", "upgraded", "--recheck", *base])
    still = _json(capsys, ["findings", "show", fid, "--format", "json", *base])
    assert still["status"] == "acknowledged"

    Announcing.server_header = "nginx/1.26.3"
    main(["findings", "rectify", fid, "--note", "upgraded to 1.26.3", "--recheck", *base])
    done = _json(capsys, ["findings", "show", fid, "--format", "json", *base])
    assert done["status"] == "resolved"
    progress = _json(capsys, ["advisory", "progress", "2026-017", "--format", "json", *base])
    row = progress["sites"][0]
    assert (row["affected"], row["acknowledged"], row["rectified"], row["verified"]) == (1, 1, 1, 1)


def test_withdrawn_warning_stops_and_its_open_findings_are_suppressed(
    tmp_path: Path, web: None, mailbox: tuple[Mailbox, int], capsys: pytest.CaptureFixture[str]
) -> None:
    _, smtp_port = mailbox
    base = ["--config", str(_config(tmp_path, smtp_port))]
    assert main(["advisory", "issue", str(EXAMPLE), *base]) == 0
    main(["scan", *base])
    assert main(["advisory", "withdraw", "2026-017", "--reason", "false alarm: backported fix", *base]) == 0
    found = [
        f
        for f in _json(capsys, ["findings", "list", "--status", "all", "--format", "json", *base])
        if f["rule_id"] == RULE
    ]
    assert [f["status"] for f in found] == ["suppressed"]
    history = _json(capsys, ["findings", "history", found[0]["id"], "--format", "json", *base])
    assert "withdrawn by city: false alarm" in json.dumps(history, ensure_ascii=False)
    main(["scan", *base])  # the rule no longer runs: the suppressed finding is left as it is
    again = [
        f
        for f in _json(capsys, ["findings", "list", "--status", "all", "--format", "json", *base])
        if f["rule_id"] == RULE
    ]
    assert [f["status"] for f in again] == ["suppressed"]
    listed = [json.loads(line) for line in _lines(capsys, ["advisory", "list", "--format", "json", *base])]
    assert listed[0]["state"] == "withdrawn"


def _lines(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[str]:
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def test_only_the_issuing_site_issues_and_withdraws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--config", str(_config(tmp_path, 25))]
    district = tmp_path / "district.yaml"
    district.write_text(
        (tmp_path / "sentinel.yaml").read_text(encoding="utf-8").replace("site: city", "site: hexi-district"),
        encoding="utf-8",
    )
    capsys.readouterr()
    assert main(["advisory", "issue", str(EXAMPLE), "--config", str(district)]) == 2
    assert "issued_by 'city' is not this site ('hexi-district')" in capsys.readouterr().err
    assert main(["advisory", "issue", str(EXAMPLE), *base]) == 0
    assert main(["advisory", "withdraw", "2026-017", "--reason", "x", "--config", str(district)]) == 2
    assert main(["advisory", "show", "2026-999", *base]) == 2
