"""国密 (Chinese commercial cryptography) on the wire: TLCP hellos and the TLS 1.3 SM profile (sans-IO).

TLCP (GM/T 0024-2014, GB/T 38636-2020) is TLS 1.1-shaped with protocol version 0x0101 in the record
and the hello. Code points were checked against GmSSL 3.1.1 (`include/gmssl/tls.h`) and the legacy
GmSSL 2 cipher list (0xE013 SM2-WITH-SMS4-SM3, 0xE011 SM2DHE-WITH-SMS4-SM3). The GCM suites come
from GB/T 38636-2020. The TLS 1.3 suites, the curveSM2 group and the sm2sig_sm3 scheme are RFC 8998.

A TLCP ClientHello carries no extensions: GM/T 0024-2014 defines none, and strict servers (GmSSL 3)
answer a hello that has any with unexpected_message.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence

from sentinel.collectors.tlswire.hello import GROUP_X25519, SIGNATURE_ALGORITHMS, ClientHelloSpec
from sentinel.collectors.tlswire.records import (
    ContentType,
    HandshakeType,
    TlsVersion,
    handshake,
    record,
    u16,
    vec8,
    vec16,
)

TLCP_VERSION = 0x0101
#: TLCP suites Sentinel offers, the ones GB/T 38636-2020 requires first (ECDHE, then static ECC)
TLCP_SUITES: dict[int, str] = {
    0xE051: "ECDHE_SM4_GCM_SM3",
    0xE053: "ECC_SM4_GCM_SM3",
    0xE011: "ECDHE_SM4_CBC_SM3",
    0xE013: "ECC_SM4_CBC_SM3",
}
#: RFC 8998 TLS 1.3 suites
TLS13_SM_SUITES: dict[int, str] = {0x00C6: "TLS_SM4_GCM_SM3", 0x00C7: "TLS_SM4_CCM_SM3"}
GROUP_CURVE_SM2 = 41
SIG_SM2SIG_SM3 = 0x0708
GROUP_NAMES = {GROUP_CURVE_SM2: "curveSM2", GROUP_X25519: "x25519", 0x0017: "secp256r1", 0x0018: "secp384r1"}

# SM2 curve (GB/T 32918.5-2017), used only to make a valid key share: the probe never derives a key
_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
_A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
_G = (
    0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
)
_Point = tuple[int, int] | None


def _add(p1: _Point, p2: _Point) -> _Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2 and (y1 + y2) % _P == 0:
        return None
    doubling = p1 == p2
    numerator, denominator = (3 * x1 * x1 + _A, 2 * y1) if doubling else (y2 - y1, x2 - x1)
    slope = numerator * pow(denominator, -1, _P) % _P
    x3 = (slope * slope - x1 - x2) % _P
    return x3, (slope * (x1 - x3) - y1) % _P


def sm2_public_point(scalar: int) -> tuple[int, int]:
    """scalar × G on the SM2 curve (double-and-add; not constant-time, which a throwaway share does not need)."""
    if not 0 < scalar < _N:
        raise ValueError("SM2 scalar out of range")
    result: _Point = None
    addend: _Point = _G
    while scalar:
        if scalar & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        scalar >>= 1
    assert result is not None  # 0 < scalar < n, so never the point at infinity
    return result


def on_sm2_curve(x: int, y: int) -> bool:
    return 0 <= x < _P and 0 <= y < _P and (y * y - (x * x * x + _A * x + _B)) % _P == 0


def sm2_key_share() -> bytes:
    """A fresh uncompressed SM2 point (65 bytes) for a curveSM2 key_share entry."""
    x, y = sm2_public_point(secrets.randbelow(_N - 1) + 1)
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def build_tlcp_client_hello(suites: Sequence[int], random: bytes | None = None) -> bytes:
    """A TLCP ClientHello record (version 0x0101 in record and hello; no session id, no extensions)."""
    random = random if random is not None else os.urandom(32)
    if len(random) != 32:
        raise ValueError("the hello random must be 32 bytes")
    if not suites:
        raise ValueError("a hello offers at least one suite")
    body = u16(TLCP_VERSION) + random + vec8(b"") + vec16(b"".join(u16(s) for s in suites)) + vec8(b"\x00")
    return record(ContentType.HANDSHAKE, TLCP_VERSION, handshake(HandshakeType.CLIENT_HELLO, body))


def tls13_sm_hello_spec(
    suites: Sequence[int], server_name: str | None, sm2_share: bytes, x25519_share: bytes | None
) -> ClientHelloSpec:
    """TLS 1.3 offering only SM suites: curveSM2 first (RFC 8998), x25519 as a fallback group so a server
    with SM suites but no curveSM2 still answers with its suite rather than a failure."""
    groups = (GROUP_CURVE_SM2, GROUP_X25519) if x25519_share is not None else (GROUP_CURVE_SM2,)
    return ClientHelloSpec(
        TlsVersion.TLS1_3,
        suites,
        server_name,
        status_request=False,
        key_share=x25519_share,
        groups=groups,
        signature_algorithms=(SIG_SM2SIG_SM3, *SIGNATURE_ALGORITHMS),
        extra_key_shares=((GROUP_CURVE_SM2, sm2_share),),
    )


def selected_group(key_share_extension: bytes | None) -> int | None:
    """The group of a TLS 1.3 ServerHello key_share (group + share) or HelloRetryRequest (group alone)."""
    if key_share_extension is None or len(key_share_extension) < 2:
        return None
    return int.from_bytes(key_share_extension[:2], "big")


def group_name(group: int | None) -> str | None:
    if group is None:
        return None
    return GROUP_NAMES.get(group, f"0x{group:04X}")


def gm_suite_name(code: int) -> str:
    return TLCP_SUITES.get(code) or TLS13_SM_SUITES.get(code) or f"0x{code:04X}"
