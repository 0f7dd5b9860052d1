"""Sans-IO service parsers, the vulnerable-versions catalogue, and the fixtures of the services/DNS rules."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel.collectors.protocols import ProtocolError, http_head, kv, mongo
from sentinel.collectors.protocols.greeting import CLEARTEXT_LOGIN, is_text, parse_greeting, stable_banner
from sentinel.collectors.protocols.telnet import DO, IAC, SB, SE, WILL, WONT, TelnetParser
from sentinel.collectors.vulnerable_versions import Version, default_catalogue_path, load_catalogue
from sentinel.engine.loader import load_rules
from sentinel.engine.paths import shipped_rules_dir
from sentinel.errors import InputError
from sentinel.ruledev.fixtures import FixtureRunner, load_fixtures

MY_RULES = [shipped_rules_dir() / "services", shipped_rules_dir() / "dns"]


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


def test_version_ordering() -> None:
    v = Version.parse
    assert v("8.9p1") < v("9.8p1") < v("9.8p2")
    assert v("1.3.5") < v("1.3.5a") < v("1.3.5.1")
    assert v("7.0.15") < v("7.2.11") and not v("7.2.11") < v("7.2.11")
    assert v("2022.83") == v("2022.83")
    with pytest.raises(ValueError):
        v("beta")


def test_shipped_catalogue_loads_and_matches() -> None:
    catalogue = load_catalogue(default_catalogue_path())
    assert [m["cves"] for m in catalogue.match("openssh", "9.6p1")] == [["CVE-2024-6387"]]
    assert catalogue.match("openssh", "9.8p1") == []
    assert [m["cves"] for m in catalogue.match("vsftpd", "2.3.4")] == [["CVE-2011-2523"]]
    assert catalogue.match("vsftpd", "3.0.3") == []
    assert catalogue.match("redis", "not-a-version") == []
    assert catalogue.match(None, "1.0") == []


def test_catalogue_mistakes_are_reported_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "vulnerable_versions.yaml"
    bad.write_text(
        "entries:\n"
        "  - product: openssh\n"
        "    fixed: '9.8p1'\n"
        "    cves: [CVE-2024-6387]\n"
        "  - product: redis\n"
        "    fixed: 'soon'\n"
        "    cves: [CVE-2025-49844]\n"
        "  - product: exim\n"
        "    cves: [not-a-cve]\n"
        "    versions: ['4.91']\n"
        "    colour: red\n"
    )
    with pytest.raises(InputError) as caught:
        load_catalogue(bad)
    shown = [str(p) for p in caught.value.problems]
    assert any(s.startswith(f"{bad}:6: ") and "'soon' is not a version" in s for s in shown)
    assert any(s.startswith(f"{bad}:9: ") and "not a CVE id" in s for s in shown)
    assert any(s.startswith(f"{bad}:11: ") and "unknown key 'colour'" in s for s in shown)

    twice = tmp_path / "twice.yaml"
    entry = "  - {product: x, fixed: '2', cves: [CVE-2020-0001]}\n"
    twice.write_text("entries:\n" + entry + entry)
    with pytest.raises(InputError, match=r"twice.yaml:3: entry 2 repeats entry 1"):
        load_catalogue(twice)
    with pytest.raises(InputError, match="must be a mapping"):
        (tmp_path / "list.yaml").write_text("- 1\n")
        load_catalogue(tmp_path / "list.yaml")


def test_fixtures_of_the_service_and_dns_rules_pass() -> None:
    rules = [r for r in load_rules(MY_RULES) if r.id.startswith(("service_", "dns_")) and r.id != "dns_answer_changed"]
    assert len(rules) == 10
    ids = {r.id for r in rules}
    fixtures, problems = load_fixtures([shipped_rules_dir()])
    assert [p for p in problems if Path(p.file).stem in ids] == []
    runner = FixtureRunner(rules)
    mine = [f for f in fixtures if f.fixture.rule in ids]
    assert {f.fixture.rule for f in mine} == {r.id for r in rules}
    results = [result for f in mine for result in runner.run(f)]
    assert [(r.rule_id, r.case, r.message) for r in results if not r.ok] == []
    for rule in rules:
        outcomes = {c.expect for f in mine if f.fixture.rule == rule.id for c in f.fixture.cases}
        assert {"present", "absent"} <= outcomes, rule.id


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
