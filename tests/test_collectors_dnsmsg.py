"""DNS message checks and SPF / DMARC / CAA reading (pure functions)."""

from __future__ import annotations

import dns.message
import dns.rrset
import pytest

from sentinel.collectors.protocols import ProtocolError
from sentinel.collectors.protocols.dnsmsg import (
    build_query,
    caa_candidates,
    mail_domain,
    parse_answer,
    read_dmarc,
    read_spf,
)


def _answer_to(query: dns.message.Message, *records: str) -> bytes:
    response = dns.message.make_response(query)
    for record in records:
        name, ttl, rdclass, rdtype, rdata = record.split(" ", 4)
        response.answer.append(dns.rrset.from_text(name, int(ttl), rdclass, rdtype, rdata))
    return response.to_wire()


def test_answer_records_and_cname_chain() -> None:
    query = build_query("www.example.cn", "A")
    wire = _answer_to(query, "www.example.cn. 60 IN CNAME edge.cdn.example.", "edge.cdn.example. 60 IN A 10.20.1.5")
    answer = parse_answer(query, wire, "A")
    assert (answer.rcode, answer.records, answer.cnames) == ("NOERROR", ("10.20.1.5",), ("edge.cdn.example",))


def test_answer_to_another_question_is_refused() -> None:
    query, other = build_query("a.example.cn", "A"), build_query("b.example.cn", "A")
    with pytest.raises(ProtocolError, match="does not match"):
        parse_answer(query, _answer_to(other, "b.example.cn. 60 IN A 10.0.0.1"), "A")
    with pytest.raises(ProtocolError, match="malformed"):
        parse_answer(query, b"\x00\x01\x02", "A")


def test_spf_qualifiers() -> None:
    assert read_spf(("v=spf1 mx -all",)).all == "-all"
    assert read_spf(("v=spf1 include:_spf.example.cn all",)).all == "+all"
    assert read_spf(("v=spf1 redirect=_spf.example.cn",)).all == "none"
    assert read_spf(("google-site-verification=x", "v=spf10 nope")).present is False
    assert read_spf(("v=spf1 -all", "v=spf1 ~all")).count == 2


def test_dmarc_policies() -> None:
    assert read_dmarc(("v=DMARC1; p=reject; rua=mailto:d@example.cn",)).policy == "reject"
    assert read_dmarc(("v=DMARC1;p=none",)).policy == "none"
    assert read_dmarc(("v=DMARC1; rua=mailto:d@example.cn",)).policy == "invalid"
    assert read_dmarc(("v=DMARC1; p=reject", "v=DMARC1; p=none")).policy == "invalid"
    assert read_dmarc(()).present is False


def test_mail_domain_and_caa_tree() -> None:
    assert mail_domain("mail.example.gov.cn") == "example.gov.cn"
    assert mail_domain("portal.example.gov.cn") == "portal.example.gov.cn"
    assert mail_domain("mail.cn") == "mail.cn"
    assert caa_candidates("www.portal.example.gov.cn") == [
        "www.portal.example.gov.cn",
        "portal.example.gov.cn",
        "example.gov.cn",
    ]
    assert caa_candidates("www.example.com") == ["www.example.com", "example.com"]
