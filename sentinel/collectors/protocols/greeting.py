"""Server-first greetings (SSH, FTP, SMTP, POP3, IMAP, Telnet): which service, which product and version.

Pure functions over the bytes a server sent before we said anything. Product names are lower-case
and are the keys of `rules/data/vulnerable_versions.yaml`.

A service is named only from a greeting that parses as that protocol's text; the port never names it
on its own (random bytes on port 21 are not FTP). Anything else is `UNIDENTIFIED`, which claims nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: the service usually found on a well-known port: what the probe expects, never evidence of what answered
SERVICE_BY_PORT = {
    21: "ftp",
    22: "ssh",
    23: "telnet",
    25: "smtp",
    110: "pop3",
    143: "imap",
    465: "smtp",
    587: "smtp",
    993: "imap",
    995: "pop3",
    2222: "ssh",
    2323: "telnet",
}
#: services whose logins cross the network in clear text (MLPS 8.1.4.1 c))
CLEARTEXT_LOGIN = frozenset({"telnet", "ftp"})
#: ports whose service speaks TLS from the first byte
IMPLICIT_TLS_PORTS = frozenset({465, 993, 995})
#: the service of a greeting that parses as no known protocol
UNIDENTIFIED = "unidentified"
#: services whose greetings are FTP/SMTP-style numbered replies (RFC 959 / 5321)
_REPLY_SERVICES = frozenset({"ftp", "smtp"})
#: control characters a text protocol line may hold (NVT: NUL after CR, BEL, BS, TAB, LF, FF, CR)
_TEXT_CONTROLS = frozenset("\x00\x07\x08\t\n\x0c\r")

_SSH = re.compile(r"^SSH-(?P<proto>\d+\.\d+)-(?P<software>[!-~]+)(?:[ \t]+(?P<comment>[^\r\n]*))?")
_VERSION = r"(?P<v>\d+(?:\.\d+)+[a-z0-9]*(?:-\d+)?)"
_PRODUCTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (product, re.compile(pattern, re.I))
    for product, pattern in (
        ("openssh", rf"OpenSSH[_-]{_VERSION}"),
        ("dropbear", r"dropbear[_-](?P<v>\d{4}\.\d+)"),
        ("vsftpd", rf"vsFTPd {_VERSION}"),
        ("proftpd", rf"ProFTPD {_VERSION}"),
        ("pure-ftpd", r"Pure-FTPd"),
        ("filezilla-server", rf"FileZilla Server (?:version )?{_VERSION}"),
        ("microsoft-ftp", r"Microsoft FTP Service"),
        ("exim", rf"Exim {_VERSION}"),
        ("postfix", r"ESMTP Postfix"),
        ("sendmail", rf"Sendmail {_VERSION}"),
        ("exchange", r"Microsoft ESMTP MAIL Service"),
        ("dovecot", r"Dovecot"),
        ("courier", r"Courier-(?:IMAP|POP3)"),
        ("busybox", rf"BusyBox v{_VERSION}"),
    )
)


@dataclass(frozen=True, slots=True)
class Greeting:
    service: str
    banner: str  # printable, truncated
    product: str | None = None
    version: str | None = None
    #: protocol-specific facts (ssh.protocol, smtp.code ...), flat dotted names
    facts: tuple[tuple[str, str | int], ...] = ()


#: per-connection noise in greetings (dates, clocks, APOP challenges), masked so a banner is stable across sweeps
_VOLATILE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),?\s+)?\d{1,2}\s+[A-Z][a-z]{2}\s+\d{4}\s+\d\d:\d\d(?::\d\d)?(?:\s*[+-]\d{4})?"
    r"|\b\d\d:\d\d:\d\d\b|<[^<>@\s]+@[^<>\s]+>"
)


def printable(raw: bytes, limit: int = 256) -> str:
    """Bytes from a peer as one bounded line of text (control characters shown as spaces)."""
    text = raw.decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(text.split())[:limit]


def stable_banner(raw: bytes, limit: int = 256) -> str:
    """`printable`, with dates, clock times and challenges masked (a banner feeds change detection)."""
    return _VOLATILE.sub("<masked>", printable(raw, 4 * limit))[:limit]


def is_text(raw: bytes) -> bool:
    """Valid UTF-8 made of printable characters and line controls: what every greeting here is."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in _TEXT_CONTROLS for ch in text)


def escaped(raw: bytes, limit: int = 60) -> str:
    """The first `limit` bytes with everything but printable ASCII as \\xNN: evidence of what was sent."""
    shown = "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in raw[:limit])
    return shown + ("..." if len(raw) > limit else "")


def _first_line(raw: bytes) -> bytes:
    return raw.split(b"\n", 1)[0]


def identify_product(text: str) -> tuple[str | None, str | None]:
    """(product, version) from banner text; either may be None."""
    for product, pattern in _PRODUCTS:
        match = pattern.search(text)
        if match:
            version = match.groupdict().get("v")
            return product, version
    return None, None


def reply_code(raw: bytes) -> int | None:
    """The three-digit code of an FTP/SMTP reply (RFC 959 / 5321), or None."""
    match = re.match(rb"(\d{3})[ -]", raw)
    return int(match.group(1)) if match else None


def reply_complete(raw: bytes) -> bool:
    """A multi-line FTP/SMTP reply ends with a line 'NNN <text>' (space after the code)."""
    code = raw[:3]
    return any(line.startswith(code + b" ") for line in raw.split(b"\r\n")) or raw.startswith(code + b" ")


def unidentified(raw: bytes) -> Greeting:
    # escaped, not `printable`: noise must show as the bytes it was, and stay under the 256-character banner bound
    return Greeting(UNIDENTIFIED, escaped(raw))


def parse_greeting(port: int, raw: bytes, telnet_options: list[str] | None = None) -> Greeting:
    """Classify the first bytes a server sent on `port`.

    `telnet_options` are passed only when the stream opened with well-formed Telnet negotiation; `raw` is then
    the text that followed it, and must be text for the peer to count as Telnet."""
    if telnet_options:
        if not is_text(raw):
            return unidentified(raw)
        text = stable_banner(raw)
        product, version = identify_product(text)
        return Greeting("telnet", text, product, version, (("telnet.options", ", ".join(telnet_options)[:256]),))
    ssh = _SSH.match(raw.decode("latin-1").lstrip("\r\n"))
    if ssh and is_text(_first_line(raw.lstrip(b"\r\n"))):
        text = stable_banner(raw.lstrip(b"\r\n").split(b"\n", 1)[0])  # key exchange may follow in the same read
        software = ssh.group("software")
        product, version = identify_product(software)
        if product is None:
            name, _, rest = software.partition("_")
            product, version = name.lower()[:64], (rest or None)
        facts: tuple[tuple[str, str | int], ...] = (("ssh.protocol", ssh.group("proto")),)
        return Greeting("ssh", text, product, version, facts)
    if not is_text(_first_line(raw)):
        return unidentified(raw)
    text = stable_banner(raw)
    product, version = identify_product(text)
    code = reply_code(raw)
    if code is not None:
        default = SERVICE_BY_PORT.get(port)
        if re.search(r"\b(E?SMTP|Postfix|Exim|Sendmail)\b", text, re.I):
            service = "smtp"
        elif re.search(r"\bFTP", text, re.I):
            service = "ftp"
        elif default in _REPLY_SERVICES:  # a numbered reply is FTP or SMTP; the port only tells which
            service = str(default)
        else:
            return unidentified(raw)
        return Greeting(service, text, product, version, ((f"{service}.code", code),))
    if raw.startswith(b"+OK"):
        return Greeting("pop3", text, product, version)
    if raw.startswith(b"* OK") or raw.startswith(b"* PREAUTH"):
        return Greeting("imap", text, product, version)
    return unidentified(raw)
