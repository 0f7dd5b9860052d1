"""The syslog sink against a real rsyslog (Debian `rsyslog`, its own process and config on loopback), which writes
what it receives to a file: RFC 5424 parsed by rsyslog, octet-counted framing, TLS, CEF, and a receiver stopped and
restarted mid-stream with nothing lost or doubled (every message id exactly once)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sentinel.app import open_store
from sentinel.demo.certs import TestCA
from sentinel.demo.estate import free_port
from sentinel.errors import InputError
from sentinel.models import FindingStatus
from sentinel.sinks import build_sinks
from sentinel.sinks.outbox import install_sinks, outbox_stats
from sentinel.sinks.shipper import Shipper, ShipReport
from sentinel.sinks.syslog import SyslogSink
from sentinel.store import SqliteStore
from tests.netns import require_tool
from tests.support.findings import make_finding

LOOPBACK = "127.0.0.1"
ID = re.compile(r' id="([0-9a-f]{64})"')


@dataclass
class Rsyslog:
    """rsyslogd -n with its own config; `stop()` is SIGTERM (its orderly shutdown), `start()` again on the port."""

    folder: Path
    port: int
    tls: TestCA | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def out(self) -> Path:
        return self.folder / "received.log"

    def config(self) -> str:
        work = self.folder / "work"
        work.mkdir(exist_ok=True)
        lines = [f'global(workDirectory="{work}" maxMessageSize="64k")']
        if self.tls is not None:
            server = self.tls.issue("server", [LOOPBACK])
            lines.append(
                f'global(DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="{self.tls.files.cert}"'
                f' DefaultNetstreamDriverCertFile="{server.cert}" DefaultNetstreamDriverKeyFile="{server.key}")'
            )
            lines.append(
                'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")'
            )
        else:
            lines.append('module(load="imtcp")')
        lines += [
            f'input(type="imtcp" address="{LOOPBACK}" port="{self.port}")',
            'template(name="fields" type="string" string="%app-name%|%msgid%|%structured-data%|%msg%\\n")',
            f'*.* action(type="omfile" file="{self.out}" template="fields")',
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        conf = self.folder / "rsyslog.conf"
        conf.write_text(self.config(), encoding="utf-8")
        self.proc = subprocess.Popen(
            [require_tool("rsyslogd"), "-n", "-f", str(conf), "-i", str(self.folder / "rsyslog.pid")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"rsyslogd exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        pytest.fail("rsyslogd did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=15)
        self.proc = None

    def lines(self) -> list[str]:
        return self.out.read_text(encoding="utf-8").splitlines() if self.out.exists() else []

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        """The received lines once there are `count` (rsyslog writes its file a moment after it accepts)."""
        deadline = time.monotonic() + timeout
        while len(lines := self.lines()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return lines

    def ids(self) -> Counter[str]:
        return Counter(m.group(1) for line in self.lines() if (m := ID.search(line)))


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    receiver = Rsyslog(tmp_path, free_port(LOOPBACK))
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def options(port: int, **extra: object) -> dict[str, object]:
    return {
        "host": LOOPBACK,
        "port": port,
        "transport": "tcp",
        "backoff_initial": 0.05,
        "backoff_max": 0.2,
        "outbox_min_free_bytes": 0,
        **extra,
    }


def queued_ids(store: SqliteStore) -> list[str]:
    return [r[0] for r in store.connection.execute("SELECT doc_id FROM outbox WHERE sink = 'syslog' ORDER BY seq")]


def test_receiver_restarted_mid_stream_loses_and_doubles_nothing(rsyslog: Rsyslog, tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    sink = SyslogSink(options(rsyslog.port, batch_size=10, ship_timeout=60))
    install_sinks(store, [sink])
    store.save_findings([make_finding(i) for i in range(2000)])
    expected = queued_ids(store)
    assert len(expected) == 2000 and len(set(expected)) == 2000

    reports: list[ShipReport] = []
    shipper = threading.Thread(target=lambda: reports.append(Shipper(store, sink).drain(timeout=60)))
    shipper.start()
    deadline = time.monotonic() + 20
    while len(rsyslog.lines()) < 300 and time.monotonic() < deadline:
        time.sleep(0.005)
    rsyslog.stop()  # mid-stream: the shipper is still sending
    watcher = SqliteStore(tmp_path / "s.db")
    left_at_stop = outbox_stats(watcher, "syslog").depth
    time.sleep(0.5)
    rsyslog.start()
    shipper.join(timeout=90)
    assert not shipper.is_alive()
    report = reports[0]
    assert 0 < left_at_stop < 2000, left_at_stop  # the restart really landed mid-stream
    assert report.retried > 0  # and the shipper saw the receiver gone
    assert report.remaining == 0

    rsyslog.wait_for(2000)  # rsyslog writes its file a moment after it accepts
    received = rsyslog.ids()
    assert set(received) == set(expected)  # nothing lost
    assert max(received.values()) == 1, [i for i, n in received.items() if n > 1][:5]  # nothing doubled
    assert outbox_stats(watcher, "syslog").shipped_total == 2000
    watcher.close()


def test_messages_are_rfc5424_and_only_changes_are_sent(rsyslog: Rsyslog, tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    sink = SyslogSink(options(rsyslog.port))
    install_sinks(store, [sink])
    store.save_findings([make_finding(1)])
    store.save_findings([make_finding(1)])  # the same state again: an update, no message
    resolved = make_finding(1, FindingStatus.RESOLVED)
    store.save_findings([resolved])
    report = Shipper(store, sink).drain(timeout=10)
    assert (report.shipped, report.remaining) == (2, 0)
    lines = rsyslog.wait_for(2)
    assert len(lines) == 2
    app, msgid, sd, msg = lines[0].split("|", 3)
    assert (app, msgid) == ("sentinel", "finding-new")  # rsyslog parsed the RFC 5424 header
    assert sd.startswith("[sentinel@32473 id=") and f'finding="{resolved.id}"' in sd and 'change="new"' in sd
    assert "TLS certificate expired" in msg
    assert lines[1].split("|")[1] == "finding-resolved"


def test_tls_with_a_cef_body(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    receiver = Rsyslog(tmp_path, free_port(LOOPBACK), tls=ca)
    receiver.start()
    try:
        store = open_store(tmp_path / "s.db")
        sink = SyslogSink(options(receiver.port, transport="tls", format="cef", ca_file=str(ca.files.cert)))
        install_sinks(store, [sink])
        store.save_findings([make_finding(i) for i in range(5)])
        report = Shipper(store, sink).drain(timeout=10)
        assert (report.shipped, report.remaining) == (5, 0)
        lines = receiver.wait_for(5)
        assert len(lines) == 5
        msg = lines[0].split("|", 3)[3]
        assert msg.startswith("CEF:0|Sentinel|Sentinel|")
        assert "|tls_cert_not_expired|TLS certificate expired|10|" in msg
        assert "externalId=" in msg and "act=new" in msg
    finally:
        receiver.stop()


def test_untrusted_certificate_keeps_everything_queued(tmp_path: Path) -> None:
    receiver = Rsyslog(tmp_path, free_port(LOOPBACK), tls=TestCA(tmp_path / "ca"))
    receiver.start()
    try:
        store = open_store(tmp_path / "s.db")
        sink = SyslogSink(options(receiver.port, transport="tls"))  # the system trust store: not our test CA
        install_sinks(store, [sink])
        store.save_findings([make_finding(1)])
        report = Shipper(store, sink).drain(timeout=0.3)
        assert (report.shipped, report.remaining) == (0, 1)
        assert report.last_error is not None and "certificate" in report.last_error
        assert receiver.lines() == []
    finally:
        receiver.stop()


def test_bad_settings_name_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError) as err:
        build_sinks({"syslog": {"host": "siem", "port": 70000, "facility": "nope"}})
    text = " ".join(str(p) for p in err.value.problems)
    assert "sinks.syslog.port" in text and "sinks.syslog.facility" in text
    from sentinel.config.settings import load_settings

    monkeypatch.setenv("SENTINEL_SINKS__SYSLOG__HOST", "siem.soc.example")
    monkeypatch.setenv("SENTINEL_SINKS__SYSLOG__PORT", "1514")
    (sink,) = build_sinks(load_settings())
    assert isinstance(sink, SyslogSink)
    assert (sink.settings.host, sink.settings.port) == ("siem.soc.example", 1514)
