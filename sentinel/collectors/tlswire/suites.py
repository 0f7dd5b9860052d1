"""Cipher suites Sentinel offers, by IANA name, with the properties the rules care about.

Properties are derived from the IANA name itself (`TLS_<kx>_WITH_<cipher>_<mac>`), so the table
is a plain list of (code, name) pairs that can be checked against the registry by eye.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class WeakFamily(StrEnum):
    """Families of suites that give no or broken confidentiality."""

    NULL = "null"  # no encryption at all
    EXPORT = "export"  # 40/56-bit export-grade keys
    RC4 = "rc4"  # RC4 stream cipher (RFC 7465)
    DES = "3des"  # single DES and 3DES (64-bit blocks: Sweet32)
    ANON = "anon"  # anonymous key exchange (aNULL): no server authentication


@dataclass(frozen=True, slots=True)
class CipherSuite:
    code: int
    name: str

    @property
    def key_exchange(self) -> str:
        """`ECDHE_RSA`, `RSA`, `DH_anon`, ... (`TLS13` for TLS 1.3 suites, which carry none)."""
        head, sep, _ = self.name.partition("_WITH_")
        return head.removeprefix("TLS_") if sep else "TLS13"

    @property
    def tls13(self) -> bool:
        return self.key_exchange == "TLS13"

    @property
    def forward_secret(self) -> bool:
        """Ephemeral key exchange: a later key compromise does not expose recorded sessions."""
        kx = self.key_exchange
        return self.tls13 or kx.startswith(("DHE_", "ECDHE_")) or kx in ("DH_anon", "ECDH_anon")

    @property
    def families(self) -> frozenset[WeakFamily]:
        name = self.name
        cipher = name.partition("_WITH_")[2]
        out: set[WeakFamily] = set()
        if cipher.startswith("NULL"):
            out.add(WeakFamily.NULL)
        if "_EXPORT" in name:
            out.add(WeakFamily.EXPORT)
        if "RC4_" in cipher:
            out.add(WeakFamily.RC4)
        if "DES" in cipher:
            out.add(WeakFamily.DES)
        if "_anon_" in name:
            out.add(WeakFamily.ANON)
        return frozenset(out)

    @property
    def weak(self) -> bool:
        return bool(self.families)


# fmt: off
_TABLE: tuple[tuple[int, str], ...] = (
    # TLS 1.3 (RFC 8446, RFC 8998)
    (0x1301, "TLS_AES_128_GCM_SHA256"), (0x1302, "TLS_AES_256_GCM_SHA384"),
    (0x1303, "TLS_CHACHA20_POLY1305_SHA256"), (0x1304, "TLS_AES_128_CCM_SHA256"),
    (0x1305, "TLS_AES_128_CCM_8_SHA256"), (0x00C6, "TLS_SM4_GCM_SM3"), (0x00C7, "TLS_SM4_CCM_SM3"),
    # forward-secret AEAD first: the order a modern client sends
    (0xC02B, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"), (0xC02F, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    (0xC02C, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"), (0xC030, "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0xCCA9, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xCCA8, "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0xCCAA, "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    (0x009E, "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256"), (0x009F, "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384"),
    (0x00A2, "TLS_DHE_DSS_WITH_AES_128_GCM_SHA256"), (0x00A3, "TLS_DHE_DSS_WITH_AES_256_GCM_SHA384"),
    (0xC0AC, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM"), (0xC0AD, "TLS_ECDHE_ECDSA_WITH_AES_256_CCM"),
    (0xC09E, "TLS_DHE_RSA_WITH_AES_128_CCM"), (0xC09F, "TLS_DHE_RSA_WITH_AES_256_CCM"),
    (0xC05C, "TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256"), (0xC05D, "TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC060, "TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256"), (0xC061, "TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC052, "TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256"), (0xC053, "TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0xC023, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"), (0xC027, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"),
    (0xC024, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384"), (0xC028, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
    (0xC009, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"), (0xC013, "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
    (0xC00A, "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"), (0xC014, "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"),
    (0xC072, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_128_CBC_SHA256"),
    (0xC073, "TLS_ECDHE_ECDSA_WITH_CAMELLIA_256_CBC_SHA384"),
    (0xC076, "TLS_ECDHE_RSA_WITH_CAMELLIA_128_CBC_SHA256"), (0xC077, "TLS_ECDHE_RSA_WITH_CAMELLIA_256_CBC_SHA384"),
    (0x0067, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256"), (0x006B, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256"),
    (0x0040, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA256"), (0x006A, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA256"),
    (0x0033, "TLS_DHE_RSA_WITH_AES_128_CBC_SHA"), (0x0039, "TLS_DHE_RSA_WITH_AES_256_CBC_SHA"),
    (0x0032, "TLS_DHE_DSS_WITH_AES_128_CBC_SHA"), (0x0038, "TLS_DHE_DSS_WITH_AES_256_CBC_SHA"),
    (0x00BE, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA256"), (0x00C4, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x0045, "TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA"), (0x0088, "TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    # static RSA / static ECDH / static DH: no forward secrecy
    (0x009C, "TLS_RSA_WITH_AES_128_GCM_SHA256"), (0x009D, "TLS_RSA_WITH_AES_256_GCM_SHA384"),
    (0xC09C, "TLS_RSA_WITH_AES_128_CCM"), (0xC09D, "TLS_RSA_WITH_AES_256_CCM"),
    (0xC050, "TLS_RSA_WITH_ARIA_128_GCM_SHA256"), (0xC051, "TLS_RSA_WITH_ARIA_256_GCM_SHA384"),
    (0x003C, "TLS_RSA_WITH_AES_128_CBC_SHA256"), (0x003D, "TLS_RSA_WITH_AES_256_CBC_SHA256"),
    (0x002F, "TLS_RSA_WITH_AES_128_CBC_SHA"), (0x0035, "TLS_RSA_WITH_AES_256_CBC_SHA"),
    (0x00BA, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA256"), (0x00C0, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x0041, "TLS_RSA_WITH_CAMELLIA_128_CBC_SHA"), (0x0084, "TLS_RSA_WITH_CAMELLIA_256_CBC_SHA"),
    (0x0096, "TLS_RSA_WITH_SEED_CBC_SHA"), (0x0007, "TLS_RSA_WITH_IDEA_CBC_SHA"),
    (0xC004, "TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA"), (0xC005, "TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA"),
    (0xC00E, "TLS_ECDH_RSA_WITH_AES_128_CBC_SHA"), (0xC00F, "TLS_ECDH_RSA_WITH_AES_256_CBC_SHA"),
    (0x0030, "TLS_DH_DSS_WITH_AES_128_CBC_SHA"), (0x0036, "TLS_DH_DSS_WITH_AES_256_CBC_SHA"),
    (0x0031, "TLS_DH_RSA_WITH_AES_128_CBC_SHA"), (0x0037, "TLS_DH_RSA_WITH_AES_256_CBC_SHA"),
    # 3DES and single DES
    (0xC008, "TLS_ECDHE_ECDSA_WITH_3DES_EDE_CBC_SHA"), (0xC012, "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"),
    (0x0016, "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA"), (0x0013, "TLS_DHE_DSS_WITH_3DES_EDE_CBC_SHA"),
    (0x000A, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"), (0xC003, "TLS_ECDH_ECDSA_WITH_3DES_EDE_CBC_SHA"),
    (0xC00D, "TLS_ECDH_RSA_WITH_3DES_EDE_CBC_SHA"), (0x000D, "TLS_DH_DSS_WITH_3DES_EDE_CBC_SHA"),
    (0x0010, "TLS_DH_RSA_WITH_3DES_EDE_CBC_SHA"), (0x0009, "TLS_RSA_WITH_DES_CBC_SHA"),
    (0x0015, "TLS_DHE_RSA_WITH_DES_CBC_SHA"), (0x0012, "TLS_DHE_DSS_WITH_DES_CBC_SHA"),
    (0x000C, "TLS_DH_DSS_WITH_DES_CBC_SHA"), (0x000F, "TLS_DH_RSA_WITH_DES_CBC_SHA"),
    # RC4
    (0xC007, "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"), (0xC011, "TLS_ECDHE_RSA_WITH_RC4_128_SHA"),
    (0x0005, "TLS_RSA_WITH_RC4_128_SHA"), (0x0004, "TLS_RSA_WITH_RC4_128_MD5"),
    (0xC002, "TLS_ECDH_ECDSA_WITH_RC4_128_SHA"), (0xC00C, "TLS_ECDH_RSA_WITH_RC4_128_SHA"),
    # EXPORT
    (0x0003, "TLS_RSA_EXPORT_WITH_RC4_40_MD5"), (0x0006, "TLS_RSA_EXPORT_WITH_RC2_CBC_40_MD5"),
    (0x0008, "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"), (0x000B, "TLS_DH_DSS_EXPORT_WITH_DES40_CBC_SHA"),
    (0x000E, "TLS_DH_RSA_EXPORT_WITH_DES40_CBC_SHA"), (0x0011, "TLS_DHE_DSS_EXPORT_WITH_DES40_CBC_SHA"),
    (0x0014, "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA"),
    # anonymous (aNULL)
    (0xC018, "TLS_ECDH_anon_WITH_AES_128_CBC_SHA"), (0xC019, "TLS_ECDH_anon_WITH_AES_256_CBC_SHA"),
    (0x00A6, "TLS_DH_anon_WITH_AES_128_GCM_SHA256"), (0x00A7, "TLS_DH_anon_WITH_AES_256_GCM_SHA384"),
    (0x006C, "TLS_DH_anon_WITH_AES_128_CBC_SHA256"), (0x006D, "TLS_DH_anon_WITH_AES_256_CBC_SHA256"),
    (0x0034, "TLS_DH_anon_WITH_AES_128_CBC_SHA"), (0x003A, "TLS_DH_anon_WITH_AES_256_CBC_SHA"),
    (0x00BF, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA256"), (0x00C5, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA256"),
    (0x0046, "TLS_DH_anon_WITH_CAMELLIA_128_CBC_SHA"), (0x0089, "TLS_DH_anon_WITH_CAMELLIA_256_CBC_SHA"),
    (0xC017, "TLS_ECDH_anon_WITH_3DES_EDE_CBC_SHA"), (0x001B, "TLS_DH_anon_WITH_3DES_EDE_CBC_SHA"),
    (0x001A, "TLS_DH_anon_WITH_DES_CBC_SHA"), (0xC016, "TLS_ECDH_anon_WITH_RC4_128_SHA"),
    (0x0018, "TLS_DH_anon_WITH_RC4_128_MD5"), (0x0017, "TLS_DH_anon_EXPORT_WITH_RC4_40_MD5"),
    (0x0019, "TLS_DH_anon_EXPORT_WITH_DES40_CBC_SHA"),
    # NULL encryption
    (0xC006, "TLS_ECDHE_ECDSA_WITH_NULL_SHA"), (0xC010, "TLS_ECDHE_RSA_WITH_NULL_SHA"),
    (0xC001, "TLS_ECDH_ECDSA_WITH_NULL_SHA"), (0xC00B, "TLS_ECDH_RSA_WITH_NULL_SHA"),
    (0xC015, "TLS_ECDH_anon_WITH_NULL_SHA"), (0x003B, "TLS_RSA_WITH_NULL_SHA256"),
    (0x0002, "TLS_RSA_WITH_NULL_SHA"), (0x0001, "TLS_RSA_WITH_NULL_MD5"),
)
# fmt: on

SUITES: dict[int, CipherSuite] = {code: CipherSuite(code, name) for code, name in _TABLE}
#: signalling value: "I support secure renegotiation" (RFC 5746), sent in every pre-1.3 hello
RENEGOTIATION_SCSV = 0x00FF

#: every pre-1.3 suite in the table, strongest first (the order a modern client offers them)
LEGACY_SUITES: tuple[int, ...] = tuple(code for code, _ in _TABLE if not SUITES[code].tls13)
TLS13_SUITES: tuple[int, ...] = tuple(code for code, _ in _TABLE if SUITES[code].tls13)


def suites_in(family: WeakFamily) -> tuple[int, ...]:
    return tuple(code for code in LEGACY_SUITES if family in SUITES[code].families)


def suite_name(code: int) -> str:
    """The IANA name, or the hex code for a suite outside the table."""
    suite = SUITES.get(code)
    return suite.name if suite else f"0x{code:04X}"
