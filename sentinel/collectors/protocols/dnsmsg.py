"""DNS questions and answers (dnspython for the wire format) plus SPF, DMARC and CAA record reading.

Pure functions: the probe moves the bytes through `ScopedNetwork`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from sentinel.collectors.protocols import ProtocolError

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


def build_query(name: str, rdtype: str) -> dns.message.QueryMessage:
    try:
        return dns.message.make_query(name, rdtype)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ProtocolError(f"cannot ask for {rdtype} {name}: {exc}") from None


def parse_answer(query: dns.message.Message, wire: bytes, rdtype: str) -> Answer:
    """Check the answer belongs to `query` and extract the records of the asked type."""
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
