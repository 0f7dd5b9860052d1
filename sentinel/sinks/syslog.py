"""Finding changes as RFC 5424 syslog messages over TCP (RFC 6587 octet-counting framing) or TLS (RFC 5425),
with a plain-text or an ArcSight CEF body: what SOC platforms ingest.

Every message carries its outbox id as MSGID-independent structured data (`[sentinel@32473 id="..."]`; CEF also
`externalId=`), fixed at enqueue time, so a receiver or SIEM can recognise a resend.

TCP syslog has no application acknowledgement, so each batch goes over its own connection, which is then
half-closed; the batch counts as delivered only when the receiver closes its side after reading everything (a
receiver that closes with our bytes unread resets the connection instead, and the batch is sent again). A receiver
that stops or restarts mid-stream therefore loses nothing.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from sentinel import __version__
from sentinel.models import Finding, Severity
from sentinel.sinks.base import Delivery, EncodeContext, Entry, FindingChange, OutboxSink, Queued, content_id
from sentinel.sinks.settings import SinkOptions

FACILITIES = {
    "kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10, "security": 13, "audit": 13,
    **{f"local{n}": 16 + n for n in range(8)},
}  # fmt: skip
#: syslog severities (RFC 5424 6.2.1) and CEF's 0-10 scale per Sentinel severity
SYSLOG_SEVERITY = {Severity.CRITICAL: 2, Severity.HIGH: 3, Severity.MEDIUM: 4, Severity.LOW: 5, Severity.INFO: 6}
CEF_SEVERITY = {Severity.CRITICAL: 10, Severity.HIGH: 8, Severity.MEDIUM: 5, Severity.LOW: 3, Severity.INFO: 1}
CHANGES = ("new", "reopened", "resolved")
NOTICE = 5
MAX_FRAME = 64 * 1024


class SyslogSettings(SinkOptions):
    host: str = Field(description="receiver host name or address")
    port: int = Field(default=6514, ge=1, le=65535)
    transport: Literal["tcp", "tls"] = "tls"
    format: Literal["rfc5424", "cef"] = Field(default="rfc5424", description="message body: text or ArcSight CEF")
    facility: str = "local4"
    hostname: str = Field(default_factory=socket.gethostname, description="HOSTNAME field of every message")
    app_name: str = Field(default="sentinel", pattern=r"^[!-~]{1,48}$")
    sd_id: str = Field(default="sentinel@32473", pattern=r"^[!-~]{1,32}$", description="structured-data id")
    ca_file: Path | None = Field(default=None, description="PEM bundle that signed the receiver's certificate")
    verify_certs: bool = True
    cert_file: Path | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: Path | None = None
    timeout: float = Field(default=10.0, gt=0, le=300)
    batch_size: int = Field(default=200, ge=1, le=10_000, description="messages per connection")

    @field_validator("facility")
    @classmethod
    def _facility(cls, value: str) -> str:
        if value not in FACILITIES:
            raise ValueError(f"unknown facility '{value}' (one of {', '.join(FACILITIES)})")
        return value

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        return "".join(c for c in value if "!" <= c <= "~")[:255] or "-"


def _sd_value(text: object) -> str:
    """RFC 5424 PARAM-VALUE: '"', '\\' and ']' escaped."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _cef_header(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _cef_value(text: object) -> str:
    return str(text).replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: 'LEN SP MSG'."""
    return str(len(message)).encode() + b" " + message


class SyslogSink(OutboxSink):
    name = "syslog"
    title = "syslog receiver"
    Options = SyslogSettings
    needs_previous = True

    def __init__(self, options: Mapping[str, object] | SyslogSettings) -> None:
        super().__init__(options)
        self.settings: SyslogSettings = self.options  # type: ignore[assignment]

    def describe(self) -> str:
        return f"syslog {self.settings.transport}://{self.settings.host}:{self.settings.port}"

    # -- encoding ---------------------------------------------------------------------------------
    def message(self, change: str, finding: Finding, at: datetime, event_id: str) -> bytes:
        s = self.settings
        severity = NOTICE if change == "resolved" else SYSLOG_SEVERITY[finding.severity]
        pri = FACILITIES[s.facility] * 8 + severity
        params = {
            "id": event_id,
            "finding": finding.id,
            "change": change,
            "rule": finding.rule_id,
            "system": finding.system_id,
            "severity": finding.severity.value,
            "status": finding.status.value,
            "site": finding.site,
            "vantage": finding.vantage.value if finding.vantage is not None else "",
        }
        sd = f"[{s.sd_id} " + " ".join(f'{k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
        stamp = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        head = f"<{pri}>1 {stamp} {s.hostname} {s.app_name} - finding-{change} {sd} "
        if s.format == "cef":
            ext = {
                "rt": int(at.timestamp() * 1000),
                "externalId": event_id,
                "act": change,
                "cat": finding.category,
                "dvchost": s.hostname,
                "dhost": finding.target,
                "cs1Label": "finding_id",
                "cs1": finding.id,
                "cs2Label": "system",
                "cs2": finding.system_id,
                "cs3Label": "status",
                "cs3": finding.status.value,
                "cs4Label": "site",
                "cs4": finding.site,
                "cs5Label": "vantage",
                "cs5": finding.vantage.value if finding.vantage is not None else "",
                "msg": finding.remediation[:512],
            }
            body = (
                f"CEF:0|Sentinel|Sentinel|{_cef_header(__version__)}|{_cef_header(finding.rule_id)}|"
                f"{_cef_header(finding.title)}|{CEF_SEVERITY[finding.severity]}|"
                + " ".join(f"{k}={_cef_value(v)}" for k, v in ext.items())
            )
            return (head + body).encode()
        text = f"{finding.system_id}: {finding.title} ({finding.target}) is {change}: {finding.status.value}"
        return head.encode() + b"\xef\xbb\xbf" + text.encode()

    def encode_findings(self, changes: Sequence[FindingChange], ctx: EncodeContext) -> list[Entry]:
        at = datetime.fromtimestamp(ctx.now, UTC)
        out = []
        for change in changes:
            if change.kind not in CHANGES:
                continue
            f = change.finding
            event_id = content_id(self.name, change.kind, f.id, f.status.value, f.last_seen.isoformat(), str(ctx.now))
            text = self.message(change.kind, f, at, event_id)[: MAX_FRAME - 8]
            out.append(Entry(change.kind, event_id, text.decode("utf-8", errors="ignore")))
        return out

    # -- delivery ---------------------------------------------------------------------------------
    def _context(self) -> ssl.SSLContext:
        s = self.settings
        context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        if not s.verify_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if s.cert_file is not None:
            context.load_cert_chain(str(s.cert_file), str(s.key_file) if s.key_file else None)
        return context

    def deliver(self, rows: Sequence[Queued], state: Mapping[str, str]) -> Delivery:
        s = self.settings
        payload = b"".join(frame(r.body.encode()) for r in rows)
        try:
            raw = socket.create_connection((s.host, s.port), timeout=s.timeout)
        except OSError as exc:
            return Delivery(unreachable=f"{self.describe()} unreachable: {exc.strerror or exc}")
        try:
            sock: socket.socket = raw
            if s.transport == "tls":
                sock = self._context().wrap_socket(raw, server_hostname=s.host)
            sock.sendall(payload)
            # Half-close at the TCP level (for TLS too: what follows our FIN is read as raw bytes). The receiver's
            # orderly close after it means it read every byte; closing with our bytes unread makes it reset.
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass
        except ssl.SSLCertVerificationError as exc:
            return Delivery(unreachable=f"{self.describe()}: certificate not trusted: {exc.verify_message}")
        except (OSError, ssl.SSLError) as exc:
            return Delivery(unreachable=f"{self.describe()}: connection lost mid-batch: {exc}")
        finally:
            raw.close()
        return Delivery(statuses=[(200, "")] * len(rows))
