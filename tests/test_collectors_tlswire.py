"""tlswire, sans-IO: ClientHello bytes, server-flight parsing (fed whole, byte by byte, or hostile),
the cipher-suite table against OpenSSL's names, and chain facts from DER certificates."""

from __future__ import annotations

import contextlib
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.collectors.tlswire import (
    SUITES,
    ClientHelloSpec,
    ServerFlightParser,
    TlsParseError,
    TlsVersion,
    WeakFamily,
    build_client_hello,
    parse_client_hello_record,
    parse_server_flight,
    parse_server_hello_body,
)
from sentinel.collectors.tlswire.chain import chain_facts
from sentinel.collectors.tlswire.records import Extension
from sentinel.collectors.tlswire.server import (
    HRR_RANDOM,
    MAX_FLIGHT_BYTES,
    build_alert,
    build_certificate,
    build_certificate_status,
    build_handshake_records,
    build_server_hello,
    build_server_hello_done,
)
from sentinel.collectors.tlswire.suites import LEGACY_SUITES, TLS13_SUITES, suites_in
from tests.netns import require_tool

LEAF_DER = b"\x30\x03\x02\x01\x01"  # any bytes: the wire parser does not parse X.509


def flight_tls12(ocsp: bytes | None = b"ocsp-der", chain: tuple[bytes, ...] = (LEAF_DER, b"inter")) -> bytes:
    messages = [build_server_hello(TlsVersion.TLS1_2, 0xC02F, {Extension.STATUS_REQUEST: b""})]
    messages.append(build_certificate(list(chain)))
    if ocsp is not None:
        messages.append(build_certificate_status(ocsp))
    messages.append(build_server_hello_done())
    return build_handshake_records(TlsVersion.TLS1_2, *messages)


# -- ClientHello -----------------------------------------------------------------------------
@pytest.mark.parametrize("version", list(TlsVersion))
def test_client_hello_offers_exactly_one_version(version: TlsVersion) -> None:
    suites = TLS13_SUITES if version == TlsVersion.TLS1_3 else LEGACY_SUITES
    raw = build_client_hello(ClientHelloSpec(version, suites, "portal.example", key_share=bytes(32)))
    hello = parse_client_hello_record(raw)
    assert hello.versions == (version,)
    assert hello.suites[: len(suites)] == tuple(suites)
    if version == TlsVersion.SSL3:
        assert hello.extensions == {}  # SSLv3-era servers choke on extensions
        assert raw[1:3] == b"\x03\x00"
    else:
        assert hello.server_name == "portal.example"
        assert Extension.STATUS_REQUEST in hello.extensions
    if version == TlsVersion.TLS1_3:
        assert hello.legacy_version == TlsVersion.TLS1_2
        assert Extension.KEY_SHARE in hello.extensions


def test_client_hello_for_an_ip_target_has_no_sni() -> None:
    hello = parse_client_hello_record(build_client_hello(ClientHelloSpec(TlsVersion.TLS1_2, LEGACY_SUITES, None)))
    assert hello.server_name is None


# -- server flight ---------------------------------------------------------------------------
def test_tls12_flight_yields_hello_chain_and_stapled_status() -> None:
    flight = parse_server_flight(flight_tls12())
    assert flight.complete
    assert flight.server_hello is not None
    assert (flight.server_hello.version, flight.server_hello.cipher_suite) == (TlsVersion.TLS1_2, 0xC02F)
    assert flight.server_hello.status_request_acknowledged
    assert flight.certificates == [LEAF_DER, b"inter"]
    assert flight.ocsp_response == b"ocsp-der"


def test_flight_fed_one_byte_at_a_time_gives_the_same_result() -> None:
    data = flight_tls12()
    parser = ServerFlightParser()
    for i in range(len(data)):
        assert not parser.flight.complete
        parser.feed(data[i : i + 1])
    assert parser.flight == parse_server_flight(data)


def test_truncated_flight_is_incomplete_not_an_error() -> None:
    data = flight_tls12()
    for cut in (0, 3, 5, 20, len(data) - 1):
        flight = parse_server_flight(data[:cut])
        assert not flight.complete


def test_tls13_server_hello_ends_the_readable_flight() -> None:
    data = build_handshake_records(TlsVersion.TLS1_2, build_server_hello(TlsVersion.TLS1_3, 0x1301))
    data += b"\x17\x03\x03\x00\x05" + b"\x00" * 5  # encrypted records follow
    flight = parse_server_flight(data)
    assert flight.complete and flight.server_hello is not None
    assert flight.server_hello.version == TlsVersion.TLS1_3
    assert flight.server_hello.legacy_version == TlsVersion.TLS1_2


def test_hello_retry_request_is_recognised() -> None:
    data = build_handshake_records(TlsVersion.TLS1_2, build_server_hello(TlsVersion.TLS1_3, 0x1301, random=HRR_RANDOM))
    flight = parse_server_flight(data)
    assert flight.server_hello is not None and flight.server_hello.is_hello_retry


def test_alert_is_reported_by_name() -> None:
    flight = parse_server_flight(build_alert(70, TlsVersion.TLS1_0))
    assert flight.complete and flight.alert is not None
    assert flight.alert.name == "protocol_version"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a TLS record"),
        (b"\x16\x03\x03\x00\x04\x0b\x00\x00\x00", "not a ServerHello"),
        (b"\x16\x03\x03\xff\xff", "exceeds the TLS maximum"),
        (b"\x15\x03\x03\x00\x01\x02", "alert record shorter"),
        (b"\x17\x03\x03\x00\x01\x00", "before the ServerHello"),
    ],
)
def test_malformed_flights_raise_parse_errors_that_say_why(data: bytes, message: str) -> None:
    with pytest.raises(TlsParseError, match=message):
        parse_server_flight(data)


def test_a_flight_larger_than_the_bound_is_refused() -> None:
    parser = ServerFlightParser()
    header = build_server_hello(TlsVersion.TLS1_2, 0xC02F)
    parser.feed(build_handshake_records(TlsVersion.TLS1_2, header))
    certificate_start = b"\x16\x03\x03\x40\x00\x0b\x04\x00\x00" + bytes(0x4000 - 4)
    with pytest.raises(TlsParseError, match="exceeds"):
        for _ in range(MAX_FLIGHT_BYTES // 0x4000 + 2):
            parser.feed(certificate_start)


# -- fuzzing: nothing but TlsParseError, whatever the bytes ----------------------------------
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise_anything_but_parse_error(data: bytes) -> None:
    with contextlib.suppress(TlsParseError):
        parse_server_flight(data)
    with contextlib.suppress(TlsParseError):
        parse_server_hello_body(data)
    with contextlib.suppress(TlsParseError):
        parse_client_hello_record(data)


@FUZZ
@given(st.data())
def test_mutated_and_truncated_flights_never_raise_anything_but_parse_error(data: st.DataObject) -> None:
    raw = bytearray(flight_tls12(ocsp=data.draw(st.one_of(st.none(), st.binary(max_size=64)))))
    for _ in range(data.draw(st.integers(0, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    chunks = data.draw(st.lists(st.integers(1, 64), max_size=32))
    parser = ServerFlightParser()
    try:
        pos = 0
        for size in [*chunks, len(raw)]:
            parser.feed(bytes(raw[pos : min(pos + size, cut)]))
            pos = min(pos + size, cut)
    except TlsParseError:
        return
    hello = parser.flight.server_hello
    if hello is not None:  # whatever parsed is typed as promised
        assert isinstance(hello.version, int) and isinstance(hello.extensions, dict)


@FUZZ
@given(st.binary(min_size=38, max_size=300))
def test_server_hello_body_fuzz(body: bytes) -> None:
    body = b"\x03\x03" + body[2:]
    try:
        hello = parse_server_hello_body(body)
    except TlsParseError:
        return
    assert 0 <= hello.cipher_suite <= 0xFFFF


# -- suites ----------------------------------------------------------------------------------
def test_suite_names_agree_with_openssl() -> None:
    openssl = require_tool("openssl")
    out = subprocess.run(
        [openssl, "ciphers", "-V", "-stdname", "ALL:eNULL:@SECLEVEL=0"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    known = {}
    for line in out.splitlines():
        code, _, name = line.split()[:3]
        high, low = code.split(",")
        known[int(high, 16) << 8 | int(low, 16)] = name
    checked = [code for code in SUITES if code in known]
    assert len(checked) >= 60
    assert {c: SUITES[c].name for c in checked} == {c: known[c] for c in checked}


def test_suite_properties() -> None:
    by_name = {s.name: s for s in SUITES.values()}
    assert by_name["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"].forward_secret
    assert not by_name["TLS_RSA_WITH_AES_128_GCM_SHA256"].forward_secret
    assert by_name["TLS_AES_128_GCM_SHA256"].forward_secret
    assert by_name["TLS_RSA_EXPORT_WITH_RC4_40_MD5"].families == {WeakFamily.EXPORT, WeakFamily.RC4}
    assert by_name["TLS_ECDH_anon_WITH_NULL_SHA"].families == {WeakFamily.NULL, WeakFamily.ANON}
    assert not by_name["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"].weak
    for family in WeakFamily:
        assert suites_in(family), family


# -- chain facts -----------------------------------------------------------------------------
def _cert(cn: str, issuer: x509.Certificate | None, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey,
          ca: bool) -> x509.Certificate:  # fmt: skip
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, ca, ca, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        .sign(signer, hashes.SHA256())
    )


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@pytest.fixture(scope="module")
def pki() -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    root = _cert("Root", None, keys[0], keys[0], ca=True)
    inter = _cert("Issuing", root, keys[1], keys[0], ca=True)
    leaf = _cert("leaf.test", inter, keys[2], keys[1], ca=False)
    return root, inter, leaf


def test_chain_with_its_intermediate_is_complete_and_trusted(pki: tuple[x509.Certificate, ...]) -> None:
    root, inter, leaf = pki
    facts = chain_facts([_der(leaf), _der(inter)], [root], datetime.now(UTC))
    assert facts["chain.complete"] and facts["chain.trusted"]
    assert (facts["chain.intermediates_sent"], facts["chain.intermediates_needed"]) == (1, 1)
    assert facts["cert.self_signed"] is False


def test_chain_without_its_intermediate_names_the_missing_issuer(pki: tuple[x509.Certificate, ...]) -> None:
    root, _, leaf = pki
    facts = chain_facts([_der(leaf)], [root], datetime.now(UTC))
    assert facts["chain.complete"] is False and facts["chain.trusted"] is False
    assert facts["chain.missing_issuer"] == "CN=Issuing"


def test_extra_certificates_are_counted_as_unused(pki: tuple[x509.Certificate, ...]) -> None:
    root, inter, leaf = pki
    stray_key = ec.generate_private_key(ec.SECP256R1())
    stray = _cert("Stray", None, stray_key, stray_key, ca=True)
    facts = chain_facts([_der(leaf), _der(stray), _der(inter), _der(root)], [root], datetime.now(UTC))
    assert facts["chain.complete"] and facts["chain.unused_certs"] == 1


def test_garbage_certificate_is_reported_not_raised() -> None:
    facts = chain_facts([b"not a certificate"], [], datetime.now(UTC))
    assert "does not parse" in facts["chain.error"]
    assert chain_facts([], [], datetime.now(UTC))["chain.sent"] == 0
