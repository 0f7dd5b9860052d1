"""The server's first flight (ServerHello .. ServerHelloDone, or an alert), parsed from bytes.

`ServerFlightParser` is fed whatever arrives on the socket (or out of a capture) and says when it
has seen enough; it never reads a socket itself. Everything after a TLS 1.3 ServerHello is
encrypted, so for 1.3 the flight ends there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sentinel.collectors.tlswire.records import (
    ALERT_NAMES,
    MAX_RECORD,
    ContentType,
    Extension,
    HandshakeType,
    Reader,
    TlsParseError,
    TlsVersion,
    handshake,
    parse_extensions,
    record,
    u16,
    vec8,
    vec16,
    vec24,
)

#: ServerHello.random of a HelloRetryRequest (RFC 8446 section 4.1.3)
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
#: bounds on what a hostile server can make us buffer or keep
MAX_FLIGHT_BYTES = 256 * 1024
MAX_CERTIFICATES = 10


@dataclass(frozen=True, slots=True)
class ServerHello:
    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression: int
    extensions: dict[int, bytes]

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions when present (TLS 1.3), else legacy_version."""
        raw = self.extensions.get(Extension.SUPPORTED_VERSIONS)
        if raw is not None and len(raw) == 2:
            return int.from_bytes(raw, "big")
        return self.legacy_version

    @property
    def is_hello_retry(self) -> bool:
        return self.random == HRR_RANDOM

    @property
    def status_request_acknowledged(self) -> bool:
        """The server agreed to staple (TLS <= 1.2: an empty status_request extension)."""
        return Extension.STATUS_REQUEST in self.extensions


@dataclass(frozen=True, slots=True)
class Alert:
    level: int
    description: int

    @property
    def name(self) -> str:
        return ALERT_NAMES.get(self.description, f"alert_{self.description}")


@dataclass(slots=True)
class ServerFlight:
    """What the parser has seen so far."""

    server_hello: ServerHello | None = None
    alert: Alert | None = None
    certificates: list[bytes] = field(default_factory=list)
    certificates_total: int = 0
    ocsp_response: bytes | None = None
    #: ServerHelloDone, a TLS 1.3 ServerHello, an alert, or encrypted data: nothing more to learn
    complete: bool = False


#: TLCP (GM/T 0024-2014): version 0x0101 in records and hellos; accepted only by a parser told to expect it
TLCP_VERSION = 0x0101


def _known_version(version: int, tlcp: bool) -> bool:
    return version >> 8 == 3 or (tlcp and version == TLCP_VERSION)


def parse_server_hello_body(body: bytes, tlcp: bool = False) -> ServerHello:
    reader = Reader(body, "ServerHello")
    legacy_version = reader.u16()
    if not _known_version(legacy_version, tlcp):
        raise TlsParseError(f"ServerHello: version 0x{legacy_version:04X} is not SSL 3 / TLS")
    random = reader.take(32)
    session_id = reader.vec8()
    if len(session_id) > 32:
        raise TlsParseError("ServerHello: session id longer than 32 bytes")
    suite = reader.u16()
    compression = reader.u8()
    extensions = parse_extensions(reader, "ServerHello")
    reader.expect_end()
    return ServerHello(legacy_version, random, session_id, suite, compression, extensions)


def _parse_certificate_body(body: bytes) -> tuple[list[bytes], int]:
    """TLS <= 1.2 Certificate: a vec24 list of vec24 DER certificates (first MAX_CERTIFICATES kept)."""
    reader = Reader(body, "Certificate")
    chain = Reader(reader.vec24(), "Certificate list")
    reader.expect_end()
    certs: list[bytes] = []
    total = 0
    while chain.remaining:
        der = chain.vec24()
        total += 1
        if len(certs) < MAX_CERTIFICATES:
            certs.append(der)
    return certs, total


def _parse_certificate_status_body(body: bytes) -> bytes:
    reader = Reader(body, "CertificateStatus")
    status_type = reader.u8()
    if status_type != 1:
        raise TlsParseError(f"CertificateStatus: unknown status type {status_type}")
    response = reader.vec24()
    reader.expect_end()
    return response


class ServerFlightParser:
    """Feed bytes as they arrive; read `flight` once `flight.complete` (or the peer closed)."""

    def __init__(self, tlcp: bool = False) -> None:
        #: also accept TLCP's 0x0101 records and ServerHello (a TLS server may still answer in 3.x records)
        self.tlcp = tlcp
        self.flight = ServerFlight()
        self._buffer = bytearray()
        self._handshake = bytearray()
        self._received = 0

    def feed(self, data: bytes) -> None:
        if self.flight.complete or not data:
            return
        self._received += len(data)
        if self._received > MAX_FLIGHT_BYTES:
            raise TlsParseError(f"server flight exceeds {MAX_FLIGHT_BYTES} bytes")
        self._buffer += data
        while not self.flight.complete and len(self._buffer) >= 5:
            content_type = self._buffer[0]
            version = int.from_bytes(self._buffer[1:3], "big")
            length = int.from_bytes(self._buffer[3:5], "big")
            if content_type not in ContentType.__members__.values() or not _known_version(version, self.tlcp):
                raise TlsParseError(f"not a TLS record (starts with {bytes(self._buffer[:5])!r})")
            if length > MAX_RECORD:
                raise TlsParseError(f"record of {length} bytes exceeds the TLS maximum")
            if len(self._buffer) < 5 + length:
                return
            fragment = bytes(self._buffer[5 : 5 + length])
            del self._buffer[: 5 + length]
            self._record(content_type, fragment)

    def _record(self, content_type: int, fragment: bytes) -> None:
        if content_type == ContentType.ALERT:
            if len(fragment) < 2:
                raise TlsParseError("alert record shorter than 2 bytes")
            self.flight.alert = Alert(fragment[0], fragment[1])
            self.flight.complete = True
        elif content_type == ContentType.HANDSHAKE:
            if not fragment:
                raise TlsParseError("empty handshake record")
            self._handshake += fragment
            self._messages()
        elif self.flight.server_hello is None:
            raise TlsParseError(f"record type {content_type} before the ServerHello")
        else:  # ChangeCipherSpec or encrypted data: the readable part is over
            self.flight.complete = True

    def _messages(self) -> None:
        while not self.flight.complete and len(self._handshake) >= 4:
            msg_type = self._handshake[0]
            length = int.from_bytes(self._handshake[1:4], "big")
            if length > MAX_FLIGHT_BYTES:
                raise TlsParseError(f"handshake message of {length} bytes is too large")
            if len(self._handshake) < 4 + length:
                return
            body = bytes(self._handshake[4 : 4 + length])
            del self._handshake[: 4 + length]
            self._message(msg_type, body)

    def _message(self, msg_type: int, body: bytes) -> None:
        flight = self.flight
        if flight.server_hello is None:
            if msg_type != HandshakeType.SERVER_HELLO:
                raise TlsParseError(f"first handshake message is type {msg_type}, not a ServerHello")
            flight.server_hello = parse_server_hello_body(body, self.tlcp)
            if flight.server_hello.version == TlsVersion.TLS1_3 or flight.server_hello.is_hello_retry:
                flight.complete = True
        elif msg_type == HandshakeType.CERTIFICATE:
            flight.certificates, flight.certificates_total = _parse_certificate_body(body)
        elif msg_type == HandshakeType.CERTIFICATE_STATUS:
            flight.ocsp_response = _parse_certificate_status_body(body)
        elif msg_type == HandshakeType.SERVER_HELLO_DONE:
            flight.complete = True
        elif msg_type == HandshakeType.SERVER_HELLO:
            raise TlsParseError("second ServerHello in one flight")
        # ServerKeyExchange, CertificateRequest, ...: nothing the probe reports


def parse_server_flight(data: bytes, tlcp: bool = False) -> ServerFlight:
    """Parse captured bytes of a server's first flight (possibly incomplete)."""
    parser = ServerFlightParser(tlcp)
    parser.feed(data)
    return parser.flight


# -- the server side, for loopback test servers and round-trip tests ------------------------
def build_server_hello(
    version: int, suite: int, extensions: dict[int, bytes] | None = None, random: bytes | None = None
) -> bytes:
    """A ServerHello handshake message (not yet in a record)."""
    exts = dict(extensions or {})
    legacy = version
    if version == TlsVersion.TLS1_3:
        legacy = TlsVersion.TLS1_2
        exts.setdefault(Extension.SUPPORTED_VERSIONS, u16(TlsVersion.TLS1_3))
    body = u16(legacy) + (random or bytes(32)) + vec8(b"") + u16(suite) + b"\x00"
    if exts:
        body += vec16(b"".join(u16(t) + vec16(v) for t, v in exts.items()))
    return handshake(HandshakeType.SERVER_HELLO, body)


def build_certificate(chain: list[bytes]) -> bytes:
    return handshake(HandshakeType.CERTIFICATE, vec24(b"".join(vec24(c) for c in chain)))


def build_certificate_status(ocsp_der: bytes) -> bytes:
    return handshake(HandshakeType.CERTIFICATE_STATUS, b"\x01" + vec24(ocsp_der))


def build_server_hello_done() -> bytes:
    return handshake(HandshakeType.SERVER_HELLO_DONE, b"")


def build_alert(description: int, version: int = TlsVersion.TLS1_2, level: int = 2) -> bytes:
    return record(ContentType.ALERT, version, bytes([level, description]))


def build_handshake_records(version: int, *messages: bytes) -> bytes:
    return record(ContentType.HANDSHAKE, version, b"".join(messages))
