"""collectors/protocols: the sans-IO service parsers (greetings, telnet, Redis, memcached, MongoDB, HTTP HEAD), which
return bounded facts or raise ProtocolError whatever a hostile peer sends."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.collectors.protocols import ProtocolError, http_head, kv, mongo
from sentinel.collectors.protocols.greeting import CLEARTEXT_LOGIN, is_text, parse_greeting, stable_banner
from sentinel.collectors.protocols.telnet import DO, IAC, SB, SE, WILL, WONT, TelnetParser


@pytest.mark.parametrize(
    ("port", "raw", "expected"),
    [
        (22, b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n\x00\x00\x01", ("ssh", "openssh", "8.9p1")),
        (2222, b"SSH-1.99-Cisco-1.25\r\n", ("ssh", "cisco-1.25", None)),
        (21, b"220-Welcome\r\n220 ProFTPD 1.3.5 Server (Debian)\r\n", ("ftp", "proftpd", "1.3.5")),
        (25, b"220 mx.example.cn ESMTP Exim 4.91 Mon, 23 Nov 2026 12:00:00 +0000\r\n", ("smtp", "exim", "4.91")),
        (587, b"220 mail.example.cn ESMTP Postfix (Debian/GNU)\r\n", ("smtp", "postfix", None)),
        (110, b"+OK Dovecot ready.\r\n", ("pop3", "dovecot", None)),
        (143, b"* OK [CAPABILITY IMAP4rev1] ready\r\n", ("imap", None, None)),
        (23, b"\x00\x01binary noise", ("unidentified", None, None)),  # the port alone names nothing
        (21, b"\x93\x11\xfe random", ("unidentified", None, None)),
        (110, b"220 numbered reply\r\n", ("unidentified", None, None)),
    ],
)
def test_greetings_name_service_product_version(
    port: int, raw: bytes, expected: tuple[str, str | None, str | None]
) -> None:
    greeting = parse_greeting(port, raw)
    assert (greeting.service, greeting.product, greeting.version) == expected


def test_banner_masks_volatile_parts_and_is_bounded() -> None:
    assert stable_banner(b"220 mx ESMTP Exim 4.96 Mon, 23 Nov 2026 12:00:00 +0000\r\n") == (
        "220 mx ESMTP Exim 4.96 <masked>"
    )
    assert stable_banner(b"+OK ready <1896.697170952@dbc.mtview.ca.us>\r\n") == "+OK ready <masked>"
    assert len(stable_banner(b"A" * 100_000)) == 256
    assert parse_greeting(22, b"SSH-2.0-x\r\n" + b"\xff" * 500).banner == "SSH-2.0-x"


def test_telnet_refuses_every_option_and_keeps_text() -> None:
    parser = TelnetParser()
    reply = parser.feed(bytes((IAC, DO, 24, IAC, WILL, 1)) + b"Debian\r\n" + bytes((IAC, SB, 24, 1, IAC, SE)))
    assert reply == bytes((IAC, WONT, 24, IAC, 254, 1))
    assert parser.options == ["DO terminal-type", "WILL echo"]
    # a command split across reads is completed by the next read
    assert parser.feed(bytes((IAC,))) == b""
    assert parser.feed(bytes((DO, 31)) + b"login: ") == bytes((IAC, WONT, 31))
    assert bytes(parser.text) == b"Debian\r\nlogin: "


def test_redis_and_memcached_replies() -> None:
    assert kv.parse_redis_reply(b"+PONG\r\n") == kv.RedisReply("simple", "PONG")
    assert kv.parse_redis_reply(b"-NOAUTH Authentication required.\r\n").kind == "error"
    info = b"# Server\r\nredis_version:7.2.4\r\nredis_mode:standalone\r\n"
    raw = b"$%d\r\n%s\r\n" % (len(info), info)
    assert kv.redis_bulk_complete(raw) and not kv.redis_bulk_complete(raw[:20])
    assert kv.parse_redis_info(kv.parse_redis_reply(raw).text)["redis_version"] == "7.2.4"
    with pytest.raises(ProtocolError):
        kv.parse_redis_reply(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(ProtocolError):
        kv.parse_redis_reply(b"$abc\r\n")
    assert kv.parse_memcached_version(b"VERSION 1.6.18\r\n") == "1.6.18"
    assert kv.parse_memcached_version(b"ERROR\r\n") is None
    stats = kv.parse_memcached_stats(b"STAT pid 7\r\nSTAT curr_items 3\r\nSTAT uptime 10\r\nEND\r\n")
    assert stats == {"curr_items": "3", "uptime": "10"}


def test_mongo_op_msg_round_trip_and_hostile_replies() -> None:
    request = mongo.op_msg(7, {"hello": 1, "$db": "admin"})
    length, request_id, response_to, opcode = struct.unpack_from("<iiii", request)
    assert (length, request_id, response_to, opcode) == (len(request), 7, 0, mongo.OP_MSG)
    assert mongo.decode_document(request[21:]) == {"hello": 1, "$db": "admin"}

    body = struct.pack("<I", 0) + b"\x00" + mongo.encode_document({"version": "7.0.14", "ok": 1})
    reply = struct.pack("<iiii", 16 + len(body), 1, 7, mongo.OP_MSG) + body
    assert mongo.message_complete(reply) and not mongo.message_complete(reply[:10])
    assert mongo.parse_op_msg_reply(reply, 7) == {"version": "7.0.14", "ok": 1}
    with pytest.raises(ProtocolError, match="another request"):
        mongo.parse_op_msg_reply(reply, 8)
    broken = bytearray(reply)
    struct.pack_into("<i", broken, 21, 10_000)  # the document claims more bytes than there are
    with pytest.raises(ProtocolError):
        mongo.parse_op_msg_reply(bytes(broken), 7)
    with pytest.raises(ProtocolError):
        mongo.decode_document(b"\x0c\x00\x00\x00\x42k\x00\x00\x00\x00\x00\x00")  # unknown type 0x42


def test_http_head_answer() -> None:
    raw = b"HTTP/1.1 200 OK\r\nServer: Apache/2.4.49 (Unix)\r\nX-Powered-By: PHP/7.4.3\r\n\r\n"
    answer = http_head.parse_head(raw)
    assert (answer.status, answer.server, answer.powered_by) == (200, "Apache/2.4.49 (Unix)", "PHP/7.4.3")
    assert http_head.product_version(answer.server) == ("apache", "2.4.49")
    assert http_head.product_version("nginx") == ("nginx", None)
    assert http_head.product_version("Microsoft-IIS/10.0") == ("microsoft-iis", "10.0")
    assert http_head.product_version(None) == (None, None)
    assert http_head.head_request("fd00::1", "ua").startswith(b"HEAD / HTTP/1.1\r\nHost: [fd00::1]\r\n")
    with pytest.raises(ProtocolError):
        http_head.parse_head(b"SSH-2.0-x\r\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_parsers_survive_arbitrary_bytes(raw: bytes) -> None:
    """A hostile peer can send anything: parsers either return bounded facts or raise ProtocolError."""
    parser = TelnetParser()
    for chunk in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
        assert len(parser.feed(chunk)) <= 3 * len(raw)
    greeting = parse_greeting(21, raw, parser.options)
    assert len(greeting.banner) <= 256
    if greeting.service in CLEARTEXT_LOGIN:  # a login-service claim needs a greeting that is text
        assert is_text(raw.split(b"\n", 1)[0]) or (parser.options and is_text(raw))
    parsers = (kv.parse_redis_reply, mongo.decode_document, http_head.parse_head)
    for parse in (*parsers, lambda b: mongo.parse_op_msg_reply(b, 1)):
        with contextlib.suppress(ProtocolError):
            parse(raw)
    assert kv.parse_memcached_stats(raw).keys() <= set(kv.MEMCACHED_STAT_KEYS)
