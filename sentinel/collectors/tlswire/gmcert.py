"""Facts about SM2 certificates (TLCP's signing and encryption certificates) from their DER (sans-IO).

`cryptography` parses an SM2 certificate's structure (names, validity, serial, extensions) but refuses
its key (`Curve 1.2.156.10197.1.301 is not supported`) and its signature hash (SM3), so: those fields
come from `cryptography.x509`; the key algorithm and curve come from a minimal DER walk of the
SubjectPublicKeyInfo in the TBSCertificate; the signature algorithm is named from its OID. Nothing here
verifies an SM2 signature: chain trust needs an SM2 trust store Sentinel does not have.
"""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_RSA = "1.2.840.113549.1.1.1"
OID_SM2 = "1.2.156.10197.1.301"  # the curve (namedCurve), also used directly as key algorithm by old CAs
OID_SM2_WITH_SM3 = "1.2.156.10197.1.501"
_CURVES = {OID_SM2: "sm2", "1.2.840.10045.3.1.7": "secp256r1", "1.3.132.0.34": "secp384r1", "1.3.132.0.35": "secp521r1"}
_SIGNATURES = {
    OID_SM2_WITH_SM3: "sm2-with-sm3",
    "1.2.840.10045.4.3.2": "ecdsa-with-sha256",
    "1.2.840.10045.4.3.3": "ecdsa-with-sha384",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
}
_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
SIGN_USAGES = frozenset({"digital_signature", "content_commitment"})
ENC_USAGES = frozenset({"key_encipherment", "data_encipherment", "key_agreement"})
#: DER nesting or sizes beyond these are not a certificate worth walking
_MAX_LENGTH_BYTES = 4


class DerError(ValueError):
    """The DER does not have the shape walked here."""


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the element at `pos`, bounds-checked."""
    if pos + 2 > len(data):
        raise DerError("truncated element")
    tag, first = data[pos], data[pos + 1]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used in certificates")
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > _MAX_LENGTH_BYTES or pos + count > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise DerError("element runs past its container")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    pos = start
    while pos < end:
        tag, value_start, value_end = _tlv(data[:end], pos)
        out.append((tag, value_start, value_end))
        pos = value_end
    return out


def decode_oid(body: bytes) -> str:
    if not body or body[-1] & 0x80:
        raise DerError("bad OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def spki_algorithm(tbs: bytes) -> tuple[str, str | None]:
    """(key algorithm OID, curve OID or None) of a TBSCertificate's SubjectPublicKeyInfo."""
    tag, start, end = _tlv(tbs, 0)
    if tag != 0x30:
        raise DerError("TBSCertificate is not a SEQUENCE")
    fields = _children(tbs, start, end)
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    if len(fields) < 6:
        raise DerError("TBSCertificate has too few fields")
    # serial, signature, issuer, validity, subject, subjectPublicKeyInfo
    spki_tag, spki_start, spki_end = fields[5]
    if spki_tag != 0x30:
        raise DerError("SubjectPublicKeyInfo is not a SEQUENCE")
    spki = _children(tbs, spki_start, spki_end)
    if not spki or spki[0][0] != 0x30:
        raise DerError("SubjectPublicKeyInfo has no AlgorithmIdentifier")
    algorithm = _children(tbs, spki[0][1], spki[0][2])
    if not algorithm or algorithm[0][0] != 0x06:
        raise DerError("AlgorithmIdentifier has no OID")
    key_oid = decode_oid(tbs[algorithm[0][1] : algorithm[0][2]])
    curve = None
    if len(algorithm) > 1 and algorithm[1][0] == 0x06:
        curve = decode_oid(tbs[algorithm[1][1] : algorithm[1][2]])
    return key_oid, curve


def key_type(key_oid: str, curve: str | None) -> str:
    if key_oid == OID_SM2 or (key_oid == OID_EC_PUBLIC_KEY and curve == OID_SM2):
        return "sm2"
    if key_oid == OID_EC_PUBLIC_KEY:
        return "ec"
    if key_oid == OID_RSA:
        return "rsa"
    return key_oid


def _key_usage(cert: x509.Certificate) -> list[str] | None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
    return [name for name in _USAGES if getattr(usage, name)]


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def gm_certificate_facts(der: bytes, now: datetime) -> dict[str, Any]:
    """Flat facts (no prefix) about one certificate; a certificate that does not parse gives `parse_error`."""
    try:
        with warnings.catch_warnings():  # odd serials and the like are the server's problem, reported as is
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
            facts: dict[str, Any] = {
                "subject": cert.subject.rfc4514_string()[:300],
                "issuer": cert.issuer.rfc4514_string()[:300],
                "serial": format(cert.serial_number, "x")[:80],
                "not_before": not_before.isoformat(),
                "not_after": not_after.isoformat(),
                "days_to_expiry": round((not_after - now.astimezone(UTC)).total_seconds() / 86400, 2),
                "not_yet_valid": not_before > now.astimezone(UTC),
                "key_usage": _key_usage(cert),
                "ca": _is_ca(cert),
                "self_signed": cert.issuer == cert.subject,
                "sha256": cert.fingerprint(hashes.SHA256()).hex(),
            }
            signature_oid = cert.signature_algorithm_oid.dotted_string
            tbs = cert.tbs_certificate_bytes
    except ValueError as exc:  # malformed DER, bad extension encodings, ...
        return {"parse_error": str(exc)[:300]}
    facts["signature_algorithm"] = _SIGNATURES.get(signature_oid, signature_oid)
    try:
        key_oid, curve = spki_algorithm(tbs)
    except DerError as exc:
        facts["key_type"] = facts["curve"] = None
        facts["parse_error"] = f"public key: {exc}"
    else:
        facts["key_type"] = key_type(key_oid, curve)
        facts["curve"] = _CURVES.get(curve, curve) if curve else None
    return facts


def is_signing(facts: dict[str, Any]) -> bool | None:
    usage = facts.get("key_usage")
    return None if usage is None else bool(SIGN_USAGES & set(usage))


def is_encryption(facts: dict[str, Any]) -> bool | None:
    usage = facts.get("key_usage")
    return None if usage is None else bool(ENC_USAGES & set(usage))
