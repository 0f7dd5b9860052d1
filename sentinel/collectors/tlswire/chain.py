"""Certificate-chain facts from the DER certificates a server sent (sans-IO).

Completeness: walk from the leaf through the certificates the server sent, matching issuer names
and signatures; the chain is complete when the walk ends at a self-signed certificate or at one
whose issuer is a trust anchor. Trust (`verify_chain`, the one verdict every TLS probe gives): path
validation against the anchors with cryptography's verifier (web-PKI rules for CAs: no SHA-1 or MD5
signatures; no name or usage checks on the leaf, which `cert.hostname_match` covers), then the key
sizes a modern client demands of every certificate on the path (RSA/DSA >= 2048 bits, EC >= 256).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

SHA1_NAMES = frozenset({"sha1"})
#: signature hashes no modern client accepts on a certificate it has to verify
BROKEN_HASHES = frozenset({"sha1", "md5"})
#: smallest keys a modern client accepts (CA/B Baseline Requirements; OpenSSL SECLEVEL=2)
MIN_KEY_BITS = {"rsa": 2048, "dsa": 2048, "ec": 256}


def load_anchors(paths: Sequence[Path]) -> list[x509.Certificate]:
    """Trust anchors from PEM bundles; a file that cannot be read or parsed raises ValueError naming it."""
    anchors: list[x509.Certificate] = []
    for path in paths:
        try:
            with warnings.catch_warnings():  # old roots with odd serials are still roots
                warnings.simplefilter("ignore")
                anchors.extend(x509.load_pem_x509_certificates(path.read_bytes()))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: cannot load CA certificates: {exc}") from None
    return anchors


def _signature_valid(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Checks the signature with the issuer's key directly: `verify_directly_issued_by` refuses
    SHA-1, and a SHA-1 chain is exactly what must be recognised here (and flagged, not lost)."""
    key = issuer.public_key()
    params = cert.signature_algorithm_parameters
    digest = cert.signature_hash_algorithm
    signature, tbs = cert.signature, cert.tbs_certificate_bytes
    if isinstance(key, rsa.RSAPublicKey) and isinstance(params, padding.PKCS1v15 | padding.PSS) and digest:
        key.verify(signature, tbs, params, digest)
    elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
        key.verify(signature, tbs, params)
    elif isinstance(key, ec.EllipticCurvePublicKey) and digest is not None:
        key.verify(signature, tbs, ec.ECDSA(digest))  # cryptography gives no parameters for ecdsa-with-SHA1
    elif isinstance(key, dsa.DSAPublicKey) and digest is not None:
        key.verify(signature, tbs, digest)
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        key.verify(signature, tbs)
    else:
        return False
    return True


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        return _signature_valid(cert, issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False  # not provably the issuer (wrong key, or an algorithm cryptography cannot verify)


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issued by itself, checked by signature (SHA-1 included)."""
    return _issued_by(cert, cert)


def _hash_name(cert: x509.Certificate) -> str | None:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:  # e.g. SM2 with SM3: report none rather than fail
        return None
    return algorithm.name if algorithm is not None else None


def chain_facts(ders: Sequence[bytes], anchors: Sequence[x509.Certificate], now: datetime) -> dict[str, Any]:
    """`chain.*` fields for the certificates as sent (leaf first)."""
    certs: list[x509.Certificate] = []
    for index, der in enumerate(ders):
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            return {"chain.sent": len(ders), "chain.error": f"certificate {index} does not parse: {exc}"[:300]}
    if not certs:
        return {"chain.sent": 0, "chain.error": "the server sent no certificate"}
    leaf, pool = certs[0], certs[1:]
    path = [leaf]
    while not is_self_signed(path[-1]) and len(path) <= len(certs):
        issuer = next((c for c in pool if c not in path and _issued_by(path[-1], c)), None)
        if issuer is None:
            break
        path.append(issuer)
    top = path[-1]
    top_self_signed = is_self_signed(top)
    anchored = top_self_signed or any(_issued_by(top, a) for a in anchors) or top in anchors
    sent_intermediates = [c for c in pool if not is_self_signed(c)]
    sha1 = [c.subject.rfc4514_string()[:200] for c in [leaf, *sent_intermediates] if _hash_name(c) in SHA1_NAMES]
    facts: dict[str, Any] = {
        "chain.sent": len(certs),
        "cert.self_signed": is_self_signed(leaf),
        "chain.intermediates_sent": len(sent_intermediates),
        "chain.intermediates_used": sum(1 for c in path[1:] if not is_self_signed(c)),
        "chain.unused_certs": len([c for c in pool if c not in path]),
        "chain.complete": anchored,
        "chain.missing_issuer": None if anchored else top.issuer.rfc4514_string()[:300],
        "chain.sha1_signed": sha1,
        "cert.signature_sha1": _hash_name(leaf) in SHA1_NAMES,
        "cert.signature_algorithm": getattr(leaf.signature_algorithm_oid, "_name", None)
        or leaf.signature_algorithm_oid.dotted_string,
    }
    facts.update(_trust(leaf, pool, anchors, now))
    return facts


@dataclass(frozen=True, slots=True)
class TrustVerdict:
    """Does a modern client trust this chain? `trusted` None: could not tell (no anchors)."""

    trusted: bool | None
    error: str | None = None
    #: intermediates between leaf and anchor on the verified path (what the server must send)
    intermediates_needed: int | None = None


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()[:200]


def key_bits(cert: x509.Certificate) -> tuple[str, int | None]:
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 448
    return type(key).__name__, None


def _weak_key(cert: x509.Certificate) -> str | None:
    kind, bits = key_bits(cert)
    floor = MIN_KEY_BITS.get(kind)
    if floor is not None and bits is not None and bits < floor:
        return f"{kind.upper()} key of {bits} bits is too weak (at least {floor}) in {_subject(cert)}"
    return None


def _why_untrusted(leaf: x509.Certificate, pool: Sequence[x509.Certificate], now: datetime, raw: str) -> str:
    """A reason a person can act on; the verifier's own text is kept when nothing plainer applies."""
    for cert in [leaf, *pool]:
        if cert.not_valid_after_utc < now:
            return f"certificate has expired ({_subject(cert)}, not after {cert.not_valid_after_utc.isoformat()})"
        if cert.not_valid_before_utc > now:
            return f"certificate is not yet valid ({_subject(cert)})"
    for cert in [leaf, *(c for c in pool if not is_self_signed(c))]:
        if _hash_name(cert) in BROKEN_HASHES:
            return f"certificate signed with {_hash_name(cert)!s:.10} is not accepted ({_subject(cert)})"
    if is_self_signed(leaf):
        return f"self-signed certificate ({_subject(leaf)})"
    return f"certificate chain does not verify: {raw}"[:300]


def verify_chain(
    leaf: x509.Certificate, pool: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate], now: datetime
) -> TrustVerdict:
    """The trust verdict: a path from `leaf` through `pool` to an anchor that a modern client accepts."""
    if not anchors:
        return TrustVerdict(None, "no trust anchors loaded")
    verifier = (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .time(now)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, list(pool))
    except (VerificationError, ValueError, UnsupportedAlgorithm) as exc:
        return TrustVerdict(False, _why_untrusted(leaf, pool, now, str(exc)))
    weak = next((w for c in verified.chain if (w := _weak_key(c)) is not None), None)
    if weak is not None:
        return TrustVerdict(False, f"certificate not accepted: {weak}"[:300])
    # the verified chain runs leaf .. anchor; what lies between is what a client needs from the server
    return TrustVerdict(True, None, max(0, len(verified.chain) - 2))


def _trust(
    leaf: x509.Certificate, pool: list[x509.Certificate], anchors: Sequence[x509.Certificate], now: datetime
) -> dict[str, Any]:
    verdict = verify_chain(leaf, pool, anchors, now)
    out: dict[str, Any] = {"chain.trusted": verdict.trusted, "chain.trust_error": verdict.error}
    if verdict.trusted is not None:
        out["chain.intermediates_needed"] = verdict.intermediates_needed
    return out
