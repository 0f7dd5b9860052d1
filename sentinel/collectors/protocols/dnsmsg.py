"""DNS questions and answers (dnspython for the wire format) plus SPF, DMARC and CAA record reading, and
the fast path that reads the question of many query messages at once (the passive DNS detector's).

Pure functions: the probe moves the bytes through `ScopedNetwork`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sentinel.collectors.protocols import ProtocolError

if TYPE_CHECKING:
    import dns.message
    import dns.rdatatype
    import numpy as np
    import numpy.typing as npt

MAX_RECORDS = 16
#: first labels that name a mail host rather than the mail domain (mail.example.cn → example.cn)
MAIL_HOST_LABELS = frozenset({"mail", "smtp", "mx", "imap", "pop", "pop3", "webmail", "email", "owa", "exchange"})
#: two-label suffixes under which a registrant never sits (CAA tree-climbing stops below them)
PUBLIC_SECOND_LEVEL = frozenset({"gov.cn", "com.cn", "edu.cn", "org.cn", "net.cn", "ac.cn", "mil.cn"})


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: str
    records: tuple[str, ...]  # text of the rdata of the asked type, sorted
    cnames: tuple[str, ...]
    truncated: bool


# dnspython is imported where it is used: the passive DNS detector (fast path below) and the settings (which
# import the DNS probe for its Options) do not need it.
def build_query(name: str, rdtype: str) -> dns.message.QueryMessage:
    import dns.exception
    import dns.message

    try:
        return dns.message.make_query(name, rdtype)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ProtocolError(f"cannot ask for {rdtype} {name}: {exc}") from None


def parse_answer(query: dns.message.Message, wire: bytes, rdtype: str) -> Answer:
    """Check the answer belongs to `query` and extract the records of the asked type."""
    import dns.exception
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype

    try:
        response = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError, IndexError) as exc:
        raise ProtocolError(f"malformed DNS answer: {type(exc).__name__}: {exc}"[:200]) from None
    if not query.is_response(response):
        raise ProtocolError("DNS answer does not match the question (id or question differs)")
    wanted = dns.rdatatype.from_text(rdtype)
    records: list[str] = []
    cnames: list[str] = []
    for rrset in response.answer:
        if rrset.rdtype == wanted:
            records.extend(_rdata_text(rd, wanted) for rd in rrset)
        elif rrset.rdtype == dns.rdatatype.CNAME:
            cnames.extend(str(rd.target).rstrip(".") for rd in rrset)
    return Answer(
        rcode=dns.rcode.to_text(response.rcode()),
        records=tuple(sorted(set(records))[:MAX_RECORDS]),
        cnames=tuple(cnames[:MAX_RECORDS]),
        truncated=bool(response.flags & dns.flags.TC),
    )


def _rdata_text(rdata: object, rdtype: dns.rdatatype.RdataType) -> str:
    import dns.rdatatype

    if rdtype == dns.rdatatype.TXT:
        strings = getattr(rdata, "strings", ())
        return b"".join(strings).decode("utf-8", "replace")[:512]
    if rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return str(getattr(rdata, "address", rdata))
    return str(rdata)[:256]


def mail_domain(name: str) -> str:
    first, _, parent = name.partition(".")
    return parent if first in MAIL_HOST_LABELS and parent.count(".") >= 1 else name


def caa_candidates(name: str) -> list[str]:
    """RFC 8659 tree climbing: the name, then each parent, down to the registrable domain."""
    out = []
    labels = name.rstrip(".").split(".")
    for i in range(len(labels) - 1):
        candidate = ".".join(labels[i:])
        if candidate in PUBLIC_SECOND_LEVEL:
            break
        out.append(candidate)
    return out


@dataclass(frozen=True, slots=True)
class Spf:
    present: bool
    record: str | None
    count: int
    all: str | None  # "-all", "~all", "?all", "+all", or "none" when the record has no all mechanism


def read_spf(txt: tuple[str, ...]) -> Spf:
    records = [t for t in txt if t.lower().startswith("v=spf1") and (len(t) == 6 or t[6] == " ")]
    if not records:
        return Spf(False, None, 0, None)
    record = records[0]
    qualifier = "none"
    for term in record.split()[1:]:
        match = re.fullmatch(r"([+\-~?]?)all", term.lower())
        if match:
            qualifier = (match.group(1) or "+") + "all"
    return Spf(True, record[:512], len(records), qualifier)


@dataclass(frozen=True, slots=True)
class Dmarc:
    present: bool
    record: str | None
    policy: str | None  # none | quarantine | reject | invalid


def read_dmarc(txt: tuple[str, ...]) -> Dmarc:
    records = [t for t in txt if t.replace(" ", "").lower().startswith("v=dmarc1")]
    if not records:
        return Dmarc(False, None, None)
    tags = {}
    for part in records[0].split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = value.strip().lower()
    policy = tags.get("p")
    valid = len(records) == 1 and policy in ("none", "quarantine", "reject")
    return Dmarc(True, records[0][:512], policy if valid else "invalid")


# -- questions of many query messages at once (passive DNS: every query of a capture) ----------------
# numpy is imported where it is used: the active probe, which imports this module, does not need it.

#: Bytes of a name as they are compared and reported: ASCII lower-cased, and every non-ASCII byte as
#: one and the same byte (0xFF), as decoding with errors="replace" turns each into U+FFFD.
NAME_BYTES = bytes(c + 32 if 65 <= c <= 90 else c if c < 128 else 0xFF for c in range(256))
#: Labels read before a question name is refused as malformed.
MAX_LABELS = 127
HEADER = 12


@dataclass(frozen=True, slots=True)
class Questions:
    """The first question of each of many DNS messages (rows of a byte matrix).

    `names[i, :lengths[i]]` is the name of row i in NAME_BYTES form, its labels joined by "." (so a "."
    inside a label reads as a separator, as it does in the name's text)."""

    ok: npt.NDArray[np.bool_]  # a query (not a response) whose first question was read whole
    qtype: npt.NDArray[np.int64]
    names: npt.NDArray[np.uint8]
    lengths: npt.NDArray[np.int64]

    def name(self, i: int) -> str:
        return name_text(self.names[i, : self.lengths[i]].tobytes())


def name_text(raw: bytes) -> str:
    """The text of a name in NAME_BYTES form."""
    return raw.decode("latin-1").replace("\xff", "\ufffd")


def read_questions(rows: npt.NDArray[np.uint8], sizes: npt.NDArray[np.int64]) -> Questions:
    """The first question of each message: row i holds a message's first `sizes[i]` bytes (zero-padded).

    A message is refused (ok False) when it is shorter than a header and a one-label question, is a
    response or asks nothing, or when its name runs past the message, has a label longer than 63 bytes
    (compression pointers included: a query's question has none) or more than MAX_LABELS labels, or
    is not followed by the two bytes of its type. The labels are walked for all rows together, one
    numpy step per label."""
    import numpy as np

    m, width = rows.shape
    sizes = sizes.astype(np.int64)
    pad = np.zeros((m, 1), np.uint8)
    table = rows if width else pad
    last = table.shape[1] - 1
    flat = np.ascontiguousarray(table).ravel()
    base = np.arange(m, dtype=np.int64) * (last + 1)

    def byte(at: npt.NDArray[np.int64], row: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        value: npt.NDArray[np.int64] = flat[base[row] + np.minimum(at, last)].astype(np.int64)
        return value

    everyone = np.arange(m, dtype=np.int64)
    flags = byte(np.full(m, 2), everyone) << 8 | byte(np.full(m, 3), everyone)
    qdcount = byte(np.full(m, 4), everyone) << 8 | byte(np.full(m, 5), everyone)
    alive = (sizes >= HEADER + 5) & (flags & 0x8000 == 0) & (qdcount >= 1)
    end = np.zeros(m, np.int64)  # past the name's terminating zero, for the rows that reach it
    labels = np.zeros(m, np.int64)
    dots: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []  # (row, position of a length byte)
    row = np.flatnonzero(alive)
    pos = np.full(row.size, HEADER, np.int64)
    for step in range(MAX_LABELS + 1):
        if not row.size:
            break
        size = sizes[row]
        inside = pos < size
        length = np.where(inside, byte(pos, row), -1)
        done = length == 0
        end[row[done]] = pos[done] + 1
        go_on = inside & (length > 0) & (length <= 63) & (pos + 1 + length <= size) & (step < MAX_LABELS)
        if step:
            dots.append((row[go_on], pos[go_on]))
        labels[row[go_on]] += 1
        row, pos = row[go_on], pos[go_on] + 1 + length[go_on]
    ok = (end > 0) & (end + 2 <= sizes) & (labels > 0)
    qtype = np.where(ok, byte(end, everyone) << 8 | byte(end + 1, everyone), 0)
    lengths = np.where(ok, end - HEADER - 2, 0)  # the labels and the dots between them
    span = int(lengths.max()) if m else 0
    names = np.zeros((m, span), np.uint8)
    if span:
        col = np.arange(span)
        within = col < lengths[:, None]
        at = base[:, None] + np.minimum(HEADER + 1 + col, last)
        names[within] = flat[at[within]]
        for r, p in dots:
            keep = ok[r]
            names[r[keep], p[keep] - HEADER - 1] = ord(".")
        names = np.frombuffer(NAME_BYTES, np.uint8)[names] * within
    return Questions(ok, qtype, names.astype(np.uint8), lengths)


def parse_question(wire: bytes) -> tuple[str, int] | None:
    """(name, type) of the first question of a DNS query message, or None if it is not one (see
    read_questions, which this reads it with)."""
    import numpy as np

    rows = np.frombuffer(wire, np.uint8).reshape(1, -1)
    q = read_questions(rows, np.array([len(wire)], np.int64))
    return (q.name(0), int(q.qtype[0])) if q.ok[0] else None
