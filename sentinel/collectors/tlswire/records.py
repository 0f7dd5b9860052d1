"""TLS record-layer constants, versions and a bounded byte reader (RFC 5246, RFC 8446)."""

from __future__ import annotations

import struct
from enum import IntEnum


class TlsParseError(ValueError):
    """The peer's bytes are not well-formed TLS (the remote side broke the protocol)."""


class ContentType(IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23


class HandshakeType(IntEnum):
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    SERVER_HELLO_DONE = 14
    CERTIFICATE_STATUS = 22


class Extension(IntEnum):
    SERVER_NAME = 0
    STATUS_REQUEST = 5
    SUPPORTED_GROUPS = 10
    EC_POINT_FORMATS = 11
    SIGNATURE_ALGORITHMS = 13
    SUPPORTED_VERSIONS = 43
    KEY_SHARE = 51


class TlsVersion(IntEnum):
    SSL3 = 0x0300
    TLS1_0 = 0x0301
    TLS1_1 = 0x0302
    TLS1_2 = 0x0303
    TLS1_3 = 0x0304

    @property
    def label(self) -> str:
        """The name Python's `ssl` and the `tls` probe use (`TLSv1.2`)."""
        return _LABELS[self]


_LABELS = {
    TlsVersion.SSL3: "SSLv3",
    TlsVersion.TLS1_0: "TLSv1",
    TlsVersion.TLS1_1: "TLSv1.1",
    TlsVersion.TLS1_2: "TLSv1.2",
    TlsVersion.TLS1_3: "TLSv1.3",
}

ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    47: "illegal_parameter",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    120: "no_application_protocol",
}

#: the longest record fragment TLS allows (2^14) plus the expansion allowed for protected records
MAX_RECORD = 2**14 + 2048


def version_label(value: int) -> str:
    try:
        return TlsVersion(value).label
    except ValueError:
        return f"0x{value:04X}"


class Reader:
    """Reads length-prefixed TLS fields from a buffer; every overrun is a TlsParseError."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise TlsParseError(f"{self._what}: truncated (needed {n} bytes, {self.remaining} left)")
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def vec8(self) -> bytes:
        return self.take(self.u8())

    def vec16(self) -> bytes:
        return self.take(self.u16())

    def vec24(self) -> bytes:
        return self.take(self.u24())

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def expect_end(self) -> None:
        if self.remaining:
            raise TlsParseError(f"{self._what}: {self.remaining} unexpected trailing bytes")


def u16(value: int) -> bytes:
    return struct.pack("!H", value)


def vec8(body: bytes) -> bytes:
    return bytes([len(body)]) + body


def vec16(body: bytes) -> bytes:
    return u16(len(body)) + body


def vec24(body: bytes) -> bytes:
    return len(body).to_bytes(3, "big") + body


def record(content_type: int, version: int, fragment: bytes) -> bytes:
    """One or more records carrying `fragment` (split at 2^14 bytes)."""
    out = bytearray()
    for start in range(0, max(len(fragment), 1), 2**14):
        chunk = fragment[start : start + 2**14]
        out += bytes([content_type]) + u16(version) + vec16(chunk)
    return bytes(out)


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + vec24(body)


def parse_extensions(reader: Reader, what: str) -> dict[int, bytes]:
    """An optional extensions block (absent in SSLv3-era hellos); duplicates are an error."""
    if reader.remaining == 0:
        return {}
    block = Reader(reader.vec16(), f"{what} extensions")
    out: dict[int, bytes] = {}
    while block.remaining:
        ext_type = block.u16()
        body = block.vec16()
        if ext_type in out:
            raise TlsParseError(f"{what}: extension {ext_type} appears twice")
        out[ext_type] = body
    return out
