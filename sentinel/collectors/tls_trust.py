"""Certificate and chain facts for both TLS probes, from one trust verdict.

`tls` (one `ssl` handshake) and `tls_scan` (its own ClientHellos) see the same certificates; both
hand them to `certificate_report`, so they cannot disagree on a chain: the verdict is
`tlswire.chain.verify_chain` (no SHA-1/MD5 signatures, no weak keys) against the same anchors, the
system store plus `collectors.tls.ca_file` (or `collectors.tls_scan.ca_file`), loaded once per process.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography import x509


def verify_paths() -> list[Path]:
    """The system CA bundle as OpenSSL finds it (`SSL_CERT_FILE` honoured), else the files of its CA directory."""
    defaults = ssl.get_default_verify_paths()
    for candidate in (defaults.cafile, defaults.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return [Path(candidate)]
    folder = Path(defaults.capath or defaults.openssl_capath or "")
    if defaults.capath and folder.is_dir():  # hashed links point at the same files: read each once
        return sorted({p.resolve() for p in folder.iterdir() if p.suffix in (".pem", ".crt") or p.name[-2:-1] == "."})
    return []


@functools.cache  # parsing the system store per job would dominate a sweep
def trust_anchors(ca_file: str | None) -> tuple[tuple[x509.Certificate, ...], str | None]:
    """(anchors, error loading them); with an error the anchors are empty and trust is unknown."""
    from sentinel.collectors.tlswire.chain import load_anchors  # cryptography: see `certificate_report`

    paths = verify_paths()
    if ca_file:
        paths.append(Path(ca_file))
    try:
        return tuple(load_anchors(paths)), None
    except ValueError as exc:
        return (), str(exc)[:300]


#: every field `certificate_report` can give (certinfo's `cert.*`, tlswire.chain's `chain.*`, and its own errors)
REPORT_FIELDS = frozenset(
    {"cert.subject", "cert.issuer", "cert.sans", "cert.serial", "cert.not_before", "cert.not_after"}
    | {"cert.days_to_expiry", "cert.not_yet_valid", "cert.self_signed", "cert.hostname_match", "cert.key_type"}
    | {"cert.key_bits", "cert.signature_hash", "cert.sha256", "cert.ocsp_responder", "cert.parse_error"}
    | {"cert.signature_sha1", "cert.signature_algorithm", "chain.sent", "chain.error", "chain.trust_error"}
    | {"chain.intermediates_sent", "chain.intermediates_used", "chain.intermediates_needed", "chain.unused_certs"}
    | {"chain.complete", "chain.missing_issuer", "chain.sha1_signed", "chain.trusted"}
)


def certificate_report(ders: Sequence[bytes], host: str, ca_file: Path | str | None, now: datetime) -> dict[str, Any]:
    """`cert.*` and `chain.*` facts for the certificates a server sent (leaf first)."""
    # cryptography is imported when a probe runs: the settings import the TLS probes only for their Options
    from cryptography.exceptions import UnsupportedAlgorithm

    from sentinel.collectors.certinfo import certificate_facts
    from sentinel.collectors.tlswire.chain import chain_facts

    if not ders:
        return {"chain.sent": 0, "chain.error": "no certificate could be read"}
    anchors, anchor_error = trust_anchors(str(ca_file) if ca_file else None)
    out: dict[str, Any] = {}
    try:
        out.update(certificate_facts(ders[0], host, now))
    except (ValueError, UnsupportedAlgorithm) as exc:  # a hostile or exotic certificate is a fact too
        out["cert.parse_error"] = f"{type(exc).__name__}: {exc}"[:300]
    try:
        out.update(chain_facts(ders, anchors, now))
    except (ValueError, UnsupportedAlgorithm) as exc:
        out["chain.error"] = f"{type(exc).__name__}: {exc}"[:300]
    if anchor_error:
        out["chain.trust_error"] = anchor_error
    return out
