"""Certificate facts from DER bytes (sans-IO, so captures and active probes share it)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from sentinel.collectors.tlswire.chain import is_self_signed, key_bits


def san_names(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return san.get_values_for_type(x509.DNSName), [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _dns_match(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        rest = pattern[2:]
        head, _, tail = host.partition(".")
        return bool(head) and tail == rest and rest.count(".") >= 1
    return pattern == host


def hostname_matches(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 style: SANs only when present (CN fallback otherwise), left-most wildcard label."""
    dns, ips = san_names(cert)
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    if ip is not None:
        return str(ip) in {str(ipaddress.ip_address(x)) for x in ips}
    if dns:
        return any(_dns_match(p, host) for p in dns)
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return any(_dns_match(cn, host) for cn in cns)


def certificate_facts(der: bytes, host: str, now: datetime) -> dict[str, Any]:
    """Flat `cert.*` fields for an observation."""
    cert = x509.load_der_x509_certificate(der)
    dns, ips = san_names(cert)
    key_type, bits = key_bits(cert)
    not_after = cert.not_valid_after_utc
    not_before = cert.not_valid_before_utc
    sig = cert.signature_hash_algorithm
    return {
        "cert.subject": cert.subject.rfc4514_string(),
        "cert.issuer": cert.issuer.rfc4514_string(),
        "cert.sans": [*dns, *ips],
        "cert.serial": format(cert.serial_number, "x"),
        "cert.not_before": not_before.isoformat(),
        "cert.not_after": not_after.isoformat(),
        "cert.days_to_expiry": round((not_after - now.astimezone(UTC)).total_seconds() / 86400, 2),
        "cert.not_yet_valid": not_before > now.astimezone(UTC),
        "cert.self_signed": is_self_signed(cert),
        "cert.hostname_match": hostname_matches(cert, host),
        "cert.key_type": key_type,
        "cert.key_bits": bits,
        "cert.signature_hash": sig.name if sig is not None else None,
        "cert.sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "cert.ocsp_responder": ocsp_responder(cert),
    }


def ocsp_responder(cert: x509.Certificate) -> bool:
    """Whether the certificate names an OCSP responder (AIA): without one, there is nothing to staple."""
    try:
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return any(d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP for d in aia)


def utcnow() -> datetime:
    return datetime.now(UTC)
