"""Cleartext payloads: credentials (FTP, Telnet, HTTP Basic, POP3, IMAP, SMTP), login failures,
personal data to or from registered systems, and HTTP Host names for threat intelligence.

HTTP is found by searching the lower-cased chunk for a few needles (C speed); only the rare
packets of the mail, FTP and Telnet ports are walked in Python.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sentinel.models import Observation
from sentinel.models.target import port_target
from sentinel.traffic.decode import Packets
from sentinel.traffic.detectors.base import SAMPLE, Context, largest, reports, top_keys
from sentinel.traffic.detectors.services import BruteForceDetector
from sentinel.traffic.pii import DIGIT_CLASSES, classify, find_candidates
from sentinel.traffic.table import BoundedTable, members

LINE_PORTS = {21: "ftp", 23: "telnet", 25: "smtp", 587: "smtp", 110: "pop3", 143: "imap"}
HTTP_PORTS = {80, 8080, 8000, 8008, 8888, 3128}
ENCRYPTED_PORTS = {443, 22, 465, 636, 853, 989, 990, 993, 995, 3389, 5061, 8443}
LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
LOWER_TABLE = np.frombuffer(LOWER, np.uint8)
AUTH_BASIC = b"\r\nauthorization: basic "
HOST_HEADER = b"\r\nhost:"
HOST_SPAN = 300
HOST_SLICE = 2048
STATUS_401 = (b"http/1.1 401", b"http/1.0 401")
FAILURE_REPLIES = {"ftp": (b"530",), "pop3": (b"-err",), "smtp": (b"535",), "telnet": (b"login incorrect",)}
REDACTED = "[redacted]"
MAX_TEXT = 64
IAC = 0xFF
#: What a port is to this detector (bits), so one gather per port column replaces a test per port.
LINE, HTTP, ENCRYPTED = 1, 2, 4
PORT_ROLE = np.zeros(1 << 16, np.uint8)
PORT_ROLE[sorted(LINE_PORTS)] |= LINE
PORT_ROLE[sorted(HTTP_PORTS)] |= HTTP
PORT_ROLE[sorted(ENCRYPTED_PORTS)] |= ENCRYPTED
#: Up to this many listed domains, Host headers are read only in the requests that contain one of them
#: (a C-level search per domain); with more, every Host header is read.
FEW_LISTED = 64


@dataclass(slots=True)
class Credentials:
    count: int = 0
    usernames: set[str] = field(default_factory=set)


@dataclass(slots=True)
class PersonalData:
    id_numbers: int = 0
    mobile_numbers: int = 0
    samples: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Dialogue:
    """Per-connection login state of line protocols."""

    user: str | None = None
    expect: str | None = None  # telnet: 'user' after a login prompt, 'pass' after a password prompt
    line: bytearray = field(default_factory=bytearray)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").strip()[:MAX_TEXT]


def _b64(raw: bytes) -> bytes:
    try:
        return base64.b64decode(raw.strip(), validate=False)
    except (binascii.Error, ValueError):
        return b""


def _strip_telnet(data: bytes) -> bytes:
    """Drop IAC command sequences (negotiation) from a Telnet stream segment."""
    if IAC not in data:
        return data
    out, i, n = bytearray(), 0, len(data)
    while i < n:
        b = data[i]
        if b != IAC:
            out.append(b)
            i += 1
        elif i + 1 < n and data[i + 1] == 250:  # sub-negotiation until IAC SE
            end = data.find(b"\xff\xf0", i + 2)
            i = n if end == -1 else end + 2
        else:
            i += 3 if i + 1 < n and 251 <= data[i + 1] <= 254 else 2
    return bytes(out)


def starting_with(p: Packets, idx: np.ndarray, prefix: bytes) -> np.ndarray:
    """The packets of `idx` whose payload starts with `prefix` (compared lower-cased), in order."""
    n = len(prefix)
    idx = idx[p.plen[idx] >= n]
    head = np.take(np.frombuffer(p.buf, np.uint8), p.pstart[idx, None] + np.arange(n), mode="clip")
    found: np.ndarray = idx[(LOWER_TABLE[head] == np.frombuffer(prefix, np.uint8)).all(axis=1)]
    return found


class Joined:
    """The payloads of some packets joined by newlines, so one C-level search covers them all."""

    def __init__(self, p: Packets, idx: np.ndarray, limit: int) -> None:
        self.idx = idx
        self.lens = np.minimum(p.plen[idx], limit)
        buf = p.buf
        self.text = b"\n".join(
            [buf[a : a + n] for a, n in zip(p.pstart[idx].tolist(), self.lens.tolist(), strict=True)]
        )
        self.offsets = np.concatenate([[0], np.cumsum(self.lens + 1)[:-1]]).astype(np.int64)

    def locate(self, pos: int, length: int) -> tuple[int, int] | None:
        """(packet index, position in its payload) of text[pos:pos+length], if it lies in one payload."""
        j = int(np.searchsorted(self.offsets, pos, "right")) - 1
        if j < 0 or pos + length > self.offsets[j] + self.lens[j]:
            return None
        return int(self.idx[j]), pos - int(self.offsets[j])

    def find_all(self, text: bytes, needle: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Every occurrence of `needle` in `text` that lies within one payload: (row in idx, text position)."""
        found: list[int] = []
        pos = text.find(needle)
        while pos != -1:
            found.append(pos)
            pos = text.find(needle, pos + 1)
        at = np.array(found, np.int64)
        rows = np.searchsorted(self.offsets, at, "right") - 1
        inside = at + len(needle) <= self.offsets[rows] + self.lens[rows]
        return rows[inside], at[inside]

    def hits(self, text: bytes, needle: bytes) -> list[tuple[int, int]]:
        """(packet index, position in its payload) of every occurrence within one payload."""
        rows, at = self.find_all(text, needle)
        return list(zip(self.idx[rows].tolist(), (at - self.offsets[rows]).tolist(), strict=True))


class PayloadDetector:
    fields = reports(
        {
            "traffic.cleartext_credentials": {"source_ip", "destination_ip", "destination_port"}
            | {"credentials.protocol", "credentials.count", "credentials.usernames", "credentials.secret"},
            "traffic.personal_data": {"source_ip", "destination_ip", "service_port", "pii.id_numbers"}
            | {"pii.mobile_numbers", "pii.samples"},
        }
    )

    def __init__(
        self,
        registered: np.ndarray,
        brute: BruteForceDetector,
        on_host: Callable[[str, np.ndarray, np.ndarray], None] | None = None,
        listed: list[str] | None = None,
    ) -> None:
        """`on_host(name, clients, servers)`: the requests naming each Host (one (client, server) per
        request), for the names that may be under a `listed` domain (all names when `listed` is None)."""
        self.registered = registered
        self.brute = brute
        self.on_host = on_host
        few = listed is not None and len(listed) <= FEW_LISTED
        self._listed = [d.encode("ascii", "replace") for d in listed or ()] if few else None
        self.credentials: BoundedTable[tuple[int, int, int, str], Credentials] = BoundedTable(Credentials)
        self.personal: BoundedTable[tuple[int, int, int], PersonalData] = BoundedTable(PersonalData)
        self.dialogues: BoundedTable[tuple[int, int, int, int], Dialogue] = BoundedTable(Dialogue, 50_000)

    # -- feeding ----------------------------------------------------------------------------------
    def feed(self, p: Packets) -> None:
        data = (p.tcp | p.udp) & (p.plen > 0)
        if not data.any():
            return
        role = PORT_ROLE[p.sport] | PORT_ROLE[p.dport]
        lines = np.flatnonzero(data & p.tcp & (role & LINE > 0))
        for i in lines.tolist():
            self._line_packet(p, i)
        http = data & p.tcp & (role & HTTP > 0)
        if http.any():
            self._http(p, http)
        if self.registered.size:
            eligible = data & (role & ENCRYPTED == 0)
            eligible &= members(p.src, self.registered) | members(p.dst, self.registered)
            if eligible.any():
                self._personal(p, eligible)

    def _http(self, p: Packets, mask: np.ndarray) -> None:
        joined = Joined(p, np.flatnonzero(mask), 4096)
        low = joined.text.translate(LOWER)
        for i, pos in joined.hits(low, AUTH_BASIC):
            payload = p.payload(i, 4096)
            start = payload.lower().find(AUTH_BASIC[2:], max(pos - 2, 0)) + len(AUTH_BASIC) - 2
            end = payload.find(b"\r\n", start)
            user, sep, _secret = _b64(payload[start : end if end != -1 else None][:512]).partition(b":")
            if sep:
                self._credential(p, i, "http-basic", _text(user))
        for status in STATUS_401:
            for i in starting_with(p, joined.idx, status).tolist():
                self.brute.failure(int(p.dst[i]), int(p.src[i]), int(p.sport[i]), float(p.ts[i]))
        if self.on_host is not None:
            self._hosts(p, joined, low)

    def _hosts(self, p: Packets, joined: Joined, low: bytes) -> None:
        """Host header values: each distinct value of the batch is decoded once and handed over with
        the (client, server) of every request that carried it, in order."""
        named: np.ndarray | None = None
        if self._listed is not None:  # only requests that contain a listed domain can name one
            named = np.zeros(joined.idx.size, bool)
            for domain in self._listed:
                named[joined.find_all(low, domain)[0]] = True
            if not named.any():
                return
        rows, at = joined.find_all(low, HOST_HEADER)
        if named is not None:
            keep = named[rows]
            rows, at = rows[keep], at[keep]
        for first in range(0, rows.size, HOST_SLICE):  # bounds the per-slice byte matrix
            self._host_slice(p, joined, low, rows[first : first + HOST_SLICE], at[first : first + HOST_SLICE])

    def _host_slice(self, p: Packets, joined: Joined, low: bytes, rows: np.ndarray, at: np.ndarray) -> None:
        on_host = self.on_host
        if on_host is None:
            return
        start = at + len(HOST_HEADER)
        # the value runs to the first CRLF within 300 bytes, else 300 bytes; never past its payload
        limit = np.minimum(start + HOST_SPAN, joined.offsets[rows] + joined.lens[rows]) - start
        text = np.frombuffer(low, np.uint8)
        window = np.take(text, start[:, None] + np.arange(HOST_SPAN + 1), mode="clip")
        col = np.arange(HOST_SPAN)
        crlf = (window[:, :-1] == 13) & (window[:, 1:] == 10) & (col + 1 < limit[:, None])
        length = np.where(crlf.any(axis=1), crlf.argmax(axis=1), limit)
        value = np.where(col < length[:, None], window[:, :-1], 0).astype(np.uint8)
        keys = np.ascontiguousarray(np.hstack([value, length.view(np.uint8).reshape(-1, 8)]))
        _, first, inverse = np.unique(keys.view(f"V{HOST_SPAN + 8}").ravel(), return_index=True, return_inverse=True)
        members = np.argsort(inverse.ravel(), kind="stable")  # hits of each value, in order
        bounds = np.r_[0, np.cumsum(np.bincount(inverse.ravel()))]
        i = joined.idx[rows]
        for g in np.argsort(first, kind="stable").tolist():
            row = int(first[g])
            host = low[int(start[row]) : int(start[row] + length[row])].strip()
            name = host.decode("ascii", "replace").rsplit(":", 1)[0] if not host.startswith(b"[") else ""
            if name:
                hits = i[members[bounds[g] : bounds[g + 1]]]
                on_host(name, p.src[hits], p.dst[hits])

    def _line_packet(self, p: Packets, i: int) -> None:
        sport, dport = int(p.sport[i]), int(p.dport[i])
        to_server = dport in LINE_PORTS
        port = dport if to_server else sport
        proto = LINE_PORTS[port]
        client, server = (int(p.src[i]), int(p.dst[i])) if to_server else (int(p.dst[i]), int(p.src[i]))
        cport = sport if to_server else dport
        dialogue = self.dialogues.get((client, server, cport, port))
        if dialogue is None:
            return
        payload = p.payload(i, 2048)
        if not to_server:
            low = payload.lower()
            if any(low.startswith(r) or (proto == "telnet" and r in low) for r in FAILURE_REPLIES.get(proto, ())) or (
                proto == "imap" and b" no " in low[:40]
            ):
                self.brute.failure(client, server, port, float(p.ts[i]))
            if proto == "telnet":
                if b"password" in low:
                    dialogue.expect = "pass"
                elif b"login:" in low or b"username:" in low:
                    dialogue.expect = "user"
            elif proto == "smtp" and low.startswith(b"334 "):
                prompt = _b64(payload[4:].strip()).lower()
                dialogue.expect = "pass" if b"pass" in prompt else "user" if b"user" in prompt else dialogue.expect
            return
        if proto == "telnet":
            self._telnet(p, i, dialogue, _strip_telnet(payload))
            return
        for line in payload.split(b"\r\n")[:8]:
            self._client_line(p, i, proto, dialogue, line)

    def _client_line(self, p: Packets, i: int, proto: str, dialogue: Dialogue, line: bytes) -> None:
        word, _, rest = line.partition(b" ")
        verb = word.upper()
        if proto == "smtp" and dialogue.expect in ("user", "pass") and line and b" " not in line:
            if dialogue.expect == "user":
                dialogue.user = _text(_b64(line))
            else:
                self._credential(p, i, proto, dialogue.user or "")
            dialogue.expect = None
            return
        if proto in ("ftp", "pop3") and verb == b"USER":
            dialogue.user = _text(rest)
        elif proto in ("ftp", "pop3") and verb == b"PASS":
            self._credential(p, i, proto, dialogue.user or "")
        elif proto in ("pop3", "smtp", "imap") and (verb == b"AUTH" or rest.upper().startswith(b"AUTHENTICATE")):
            args = rest.split() if verb == b"AUTH" else rest.split()[1:]
            if args and args[0].upper() == b"PLAIN" and len(args) > 1:
                parts = _b64(args[1]).split(b"\x00")
                self._credential(p, i, proto, _text(parts[1]) if len(parts) > 2 else "")
            elif args and args[0].upper() == b"LOGIN":
                dialogue.expect = "user"
                if len(args) > 1:
                    dialogue.user, dialogue.expect = _text(_b64(args[1])), "pass"
        elif proto == "imap" and rest.upper().startswith(b"LOGIN "):
            fields = rest.split()
            self._credential(p, i, proto, _text(fields[1].strip(b'"')) if len(fields) > 1 else "")

    def _telnet(self, p: Packets, i: int, dialogue: Dialogue, data: bytes) -> None:
        for byte in data:
            if byte in (0x0D, 0x0A, 0x00):
                if dialogue.line and dialogue.expect == "user":
                    dialogue.user, dialogue.expect = _text(bytes(dialogue.line)), None
                elif dialogue.line and dialogue.expect == "pass":
                    self._credential(p, i, "telnet", dialogue.user or "")
                    dialogue.expect = None
                dialogue.line.clear()
            elif len(dialogue.line) < 256:
                dialogue.line.append(byte)

    def _credential(self, p: Packets, i: int, proto: str, user: str) -> None:
        src, dst, dport = int(p.src[i]), int(p.dst[i]), int(p.dport[i])
        creds = self.credentials.get((src, dst, dport, proto))
        if creds is not None:
            creds.count += 1
            if len(creds.usernames) < SAMPLE:
                creds.usernames.add(user)

    def _personal(self, p: Packets, eligible: np.ndarray) -> None:
        joined = Joined(p, np.flatnonzero(eligible), 1 << 16)
        classes = joined.text.translate(DIGIT_CLASSES)
        for pos, length in find_candidates(classes):
            located = joined.locate(pos, length)
            if located is None:
                continue
            found = classify(joined.text[pos : pos + length])
            if found is None:
                continue
            i = located[0]
            src, dst = int(p.src[i]), int(p.dst[i])
            port = min(int(p.sport[i]), int(p.dport[i]))
            entry = self.personal.get((src, dst, port))
            if entry is None:
                continue
            if found[0] == "id":
                entry.id_numbers += 1
            else:
                entry.mobile_numbers += 1
            if len(entry.samples) < SAMPLE:
                entry.samples.add(found[1])

    # -- reporting --------------------------------------------------------------------------------
    def observations(self, ctx: Context) -> list[Observation]:
        book = ctx.book
        creds: list[tuple[float, Observation]] = []
        for (s, d, port, proto), c in top_keys(self.credentials.items(), lambda c: c.count):
            client, server = book.text(s), book.text(d)
            data = {
                "source_ip": client,
                "destination_ip": server,
                "destination_port": port,
                "credentials.protocol": proto,
                "credentials.count": c.count,
                "credentials.usernames": sorted(c.usernames),
                "credentials.secret": REDACTED,
            }
            target = f"{client} -> {port_target(server, port)} {proto}"
            creds.append(
                (c.count, ctx.observation("traffic.cleartext_credentials", book.attribute(d, s), target, data))
            )
        personal: list[tuple[float, Observation]] = []
        for (s, d, port), e in top_keys(self.personal.items(), lambda e: e.id_numbers + e.mobile_numbers):
            src, dst = book.text(s), book.text(d)
            data = {
                "source_ip": src,
                "destination_ip": dst,
                "service_port": port,
                "pii.id_numbers": e.id_numbers,
                "pii.mobile_numbers": e.mobile_numbers,
                "pii.samples": sorted(e.samples),
            }
            obs = ctx.observation("traffic.personal_data", book.attribute(s, d), f"{src} -> {dst} port {port}", data)
            personal.append((e.id_numbers + e.mobile_numbers, obs))
        return largest(creds, len(self.credentials)) + largest(personal, len(self.personal))
