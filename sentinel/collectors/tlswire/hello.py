"""ClientHello: build the bytes Sentinel sends, and parse one (for captures and test servers)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from sentinel.collectors.tlswire.records import (
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
)
from sentinel.collectors.tlswire.suites import RENEGOTIATION_SCSV

GROUP_X25519 = 0x001D
#: x25519, secp256r1, secp384r1, secp521r1, ffdhe2048, ffdhe3072
SUPPORTED_GROUPS = (GROUP_X25519, 0x0017, 0x0018, 0x0019, 0x0100, 0x0101)
#: ecdsa/rsa-pss/rsa-pkcs1 with SHA-256..512, ed25519, then the SHA-1 ones legacy servers need
SIGNATURE_ALGORITHMS = (
    0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0807, 0x0203, 0x0201, 0x0402, 0x0202,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClientHelloSpec:
    """What one probing hello offers."""

    version: TlsVersion
    suites: Sequence[int]
    server_name: str | None = None
    status_request: bool = True
    #: a 32-byte X25519 public key; needed for TLS 1.3 (servers answer HelloRetryRequest without it)
    key_share: bytes | None = None
    random: bytes = field(default_factory=lambda: os.urandom(32))
    groups: Sequence[int] = SUPPORTED_GROUPS
    signature_algorithms: Sequence[int] = SIGNATURE_ALGORITHMS
    #: (group, public key) entries sent before the X25519 one (e.g. curveSM2 for the RFC 8998 profile)
    extra_key_shares: Sequence[tuple[int, bytes]] = ()


def _server_name(host: str) -> bytes:
    name = host.encode("idna")
    return vec16(b"\x00" + vec16(name))


def build_client_hello(spec: ClientHelloSpec) -> bytes:
    """A complete ClientHello record offering exactly `spec.version` (and nothing above it)."""
    if len(spec.random) != 32:
        raise ValueError("the hello random must be 32 bytes")
    tls13 = spec.version == TlsVersion.TLS1_3
    legacy_version = TlsVersion.TLS1_2 if tls13 else spec.version
    suites = list(spec.suites)
    if not tls13:
        suites.append(RENEGOTIATION_SCSV)
    extensions: list[tuple[int, bytes]] = []
    if spec.version > TlsVersion.SSL3:
        if spec.server_name:
            extensions.append((Extension.SERVER_NAME, _server_name(spec.server_name)))
        if spec.status_request:
            # OCSP, no responder ids, no request extensions (RFC 6066 section 8)
            extensions.append((Extension.STATUS_REQUEST, b"\x01\x00\x00\x00\x00"))
        groups = b"".join(u16(g) for g in spec.groups)
        extensions.append((Extension.SUPPORTED_GROUPS, vec16(groups)))
        extensions.append((Extension.EC_POINT_FORMATS, vec8(b"\x00")))
        if spec.version >= TlsVersion.TLS1_2:
            algs = b"".join(u16(a) for a in spec.signature_algorithms)
            extensions.append((Extension.SIGNATURE_ALGORITHMS, vec16(algs)))
        if tls13:
            extensions.append((Extension.SUPPORTED_VERSIONS, vec8(u16(TlsVersion.TLS1_3))))
            shares = [*spec.extra_key_shares]
            if spec.key_share is not None:
                shares.append((GROUP_X25519, spec.key_share))
            if shares:
                entries = b"".join(u16(group) + vec16(key) for group, key in shares)
                extensions.append((Extension.KEY_SHARE, vec16(entries)))
            extensions.append((45, vec8(b"\x01")))  # psk_key_exchange_modes: psk_dhe_ke
    session_id = os.urandom(32) if tls13 else b""  # middlebox compatibility mode for 1.3
    body = (
        u16(legacy_version)
        + spec.random
        + vec8(session_id)
        + vec16(b"".join(u16(s) for s in suites))
        + vec8(b"\x00")  # compression: null only
    )
    if extensions:
        body += vec16(b"".join(u16(t) + vec16(data) for t, data in extensions))
    record_version = TlsVersion.SSL3 if spec.version == TlsVersion.SSL3 else TlsVersion.TLS1_0
    return record(ContentType.HANDSHAKE, record_version, handshake(HandshakeType.CLIENT_HELLO, body))


@dataclass(frozen=True, slots=True)
class ClientHello:
    legacy_version: int
    random: bytes
    session_id: bytes
    suites: tuple[int, ...]
    extensions: dict[int, bytes]

    @property
    def versions(self) -> tuple[int, ...]:
        """Versions offered: the supported_versions list, else the legacy version alone."""
        raw = self.extensions.get(Extension.SUPPORTED_VERSIONS)
        if raw is None:
            return (self.legacy_version,)
        reader = Reader(raw, "supported_versions")
        listed = Reader(reader.vec8(), "supported_versions list")
        out: list[int] = []
        while listed.remaining:
            out.append(listed.u16())
        return tuple(out)

    @property
    def server_name(self) -> str | None:
        raw = self.extensions.get(Extension.SERVER_NAME)
        if not raw:
            return None
        names = Reader(Reader(raw, "server_name").vec16(), "server_name list")
        while names.remaining:
            kind, name = names.u8(), names.vec16()
            if kind == 0:
                return name.decode("ascii", "replace")
        return None


def parse_client_hello_body(body: bytes) -> ClientHello:
    """The body of a ClientHello handshake message (after its 4-byte header)."""
    reader = Reader(body, "ClientHello")
    legacy_version = reader.u16()
    random = reader.take(32)
    session_id = reader.vec8()
    raw_suites = Reader(reader.vec16(), "ClientHello cipher suites")
    suites: list[int] = []
    while raw_suites.remaining:
        suites.append(raw_suites.u16())
    reader.vec8()  # compression methods
    extensions = parse_extensions(reader, "ClientHello")
    reader.expect_end()
    return ClientHello(legacy_version, random, session_id, tuple(suites), extensions)


def parse_client_hello_record(data: bytes) -> ClientHello:
    """One ClientHello in a single handshake record, as clients send it."""
    reader = Reader(data, "ClientHello record")
    if reader.u8() != ContentType.HANDSHAKE:
        raise TlsParseError("ClientHello record: not a handshake record")
    reader.u16()
    fragment = Reader(reader.vec16(), "ClientHello handshake")
    if fragment.u8() != HandshakeType.CLIENT_HELLO:
        raise TlsParseError("ClientHello record: first message is not a ClientHello")
    return parse_client_hello_body(fragment.vec24())
