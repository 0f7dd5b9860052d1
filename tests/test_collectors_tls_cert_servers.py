"""The `tls` probe (and `tls_scan`'s certificate facts) against four different real TLS servers:
openssl s_server, nginx, a Python `ssl` server that reads before it replies, and tlslite-ng. Each serves
the same certificates; every server must yield the same facts, and both probes the same chain verdict.

Servers are started once per module; each is probed once by each probe and the tests read those
observations.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from sentinel.engine.loader import load_rules
from sentinel.models import Observation, ObservationStatus
from tests.netns import require, require_tool
from tests.tls_lab import HOST, Lab, Leaf, Pki, free_port, probe_once

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("s_server", "nginx", "python_reads_first", "tlslite")
#: facts that must not depend on which TLS stack serves the certificate
SAME_FACTS = (
    "cert.subject", "cert.issuer", "cert.sans", "cert.serial", "cert.not_before", "cert.not_after",
    "cert.self_signed", "cert.hostname_match", "cert.key_type", "cert.key_bits", "cert.signature_hash",
    "cert.signature_algorithm", "cert.signature_sha1", "cert.sha256", "chain.complete", "chain.trusted",
)  # fmt: skip


@dataclass
class Probed:
    port: int
    tls: Observation
    scan: Observation


@dataclass
class Estate:
    pki: Pki
    certs: dict[str, Leaf]
    #: (server, certificate name) -> observations
    seen: dict[tuple[str, str], Probed]


def _start(lab: Lab, server: str, leaf: Leaf, name: str) -> int:
    if server == "s_server":
        return lab.s_server(name, require_tool("openssl"), leaf)
    if server == "nginx":
        return lab.nginx(name, require_tool("nginx"), leaf)
    if server == "tlslite":
        require(_has_tlslite(), "needs tlslite-ng (pip install tlslite-ng)")
        return lab.tlslite(name, leaf)
    return lab.python_reads_first(leaf)


def _has_tlslite() -> bool:
    return importlib.util.find_spec("tlslite") is not None


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    openssl = require_tool("openssl")
    require_tool("nginx")
    require(_has_tlslite(), "needs tlslite-ng (pip install tlslite-ng)")
    folder = tmp_path_factory.mktemp("tls_cert")
    pki = Pki(openssl, folder)
    certs = {
        # CA-issued, expired two days ago: the certificate that used to be lost
        "expired": pki.leaf("expired", key="rsa2048", days=60, expired=True),
        # self-signed EC P-256 naming another host
        "mismatch": pki.leaf("mismatch", key="ec256", dns=("other.example",), ips=(), self_signed=True),
        # CA-issued, valid, right name: the control
        "good": pki.leaf("good", key="rsa3072", days=200),
    }
    lab = Lab(folder)
    try:
        ports = {
            (server, c): _start(lab, server, leaf, f"{server}-{c}") for server in SERVERS for c, leaf in certs.items()
        }
        seen = {
            key: Probed(port, probe_once("tls", port, pki.ca_cert), probe_once("tls_scan", port, pki.ca_cert))
            for key, port in ports.items()
        }
        yield Estate(pki, certs, seen)
    finally:
        lab.close()


def _expected(leaf: Leaf) -> dict[str, Any]:
    """What the certificate file itself says, read independently of the probes."""
    cert = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    return {
        "cert.subject": cert.subject.rfc4514_string(),
        "cert.issuer": cert.issuer.rfc4514_string(),
        "cert.not_after": cert.not_valid_after_utc.isoformat(),
        "cert.serial": format(cert.serial_number, "x"),
        "cert.sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }


def _verdicts(obs: Observation, *rule_ids: str) -> dict[str, bool | None]:
    rules = {r.id: r for r in load_rules([ROOT / "rules" / "tls"])}
    return {rule_id: rules[rule_id].evaluate(obs) for rule_id in rule_ids}


# -- defect 1: the certificate is read on every server, whatever it does after the handshake ---------
@pytest.mark.parametrize("server", SERVERS)
def test_every_server_yields_the_certificate(estate: Estate, server: str) -> None:
    for name, leaf in estate.certs.items():
        probed = estate.seen[(server, name)]
        for obs in (probed.tls, probed.scan):
            assert obs.status == ObservationStatus.OK, (server, name, obs.error)
            assert {k: obs.data.get(k) for k in _expected(leaf)} == _expected(leaf), (server, name, obs.kind)


def test_the_expired_certificate_is_reported_and_its_rule_fires(estate: Estate) -> None:
    for server in SERVERS:
        obs = estate.seen[(server, "expired")].tls
        assert -2.1 < obs.data["cert.days_to_expiry"] < -1.9, server
        assert obs.data["chain.valid"] is False and "expired" in obs.data["chain.error"], server
        assert _verdicts(obs, "tls_cert_not_expired", "tls_cert_not_expiring_soon") == {
            "tls_cert_not_expired": True,
            "tls_cert_not_expiring_soon": None,  # expired is not "no longer expiring soon": not judged
        }, server


def test_all_four_servers_give_the_same_facts(estate: Estate) -> None:
    for name in estate.certs:
        for kind in ("tls", "scan"):
            facts = {
                server: {k: getattr(estate.seen[(server, name)], kind).data.get(k) for k in SAME_FACTS}
                for server in SERVERS
            }
            reference = facts["s_server"]
            assert all(v is not None for k, v in reference.items() if k != "chain.missing_issuer"), (name, reference)
            for server, got in facts.items():
                assert got == reference, (name, kind, server)
            days = [getattr(estate.seen[(s, name)], kind).data["cert.days_to_expiry"] for s in SERVERS]
            assert max(days) - min(days) < 0.01, (name, kind, days)


def test_facts_of_each_certificate(estate: Estate) -> None:
    expired = estate.seen[("s_server", "expired")].tls.data
    assert (expired["cert.key_type"], expired["cert.key_bits"]) == ("rsa", 2048)
    assert expired["cert.signature_algorithm"] == "sha256WithRSAEncryption"
    assert (expired["cert.self_signed"], expired["cert.hostname_match"]) == (False, True)
    mismatch = estate.seen[("s_server", "mismatch")].tls.data
    assert (mismatch["cert.key_type"], mismatch["cert.key_bits"]) == ("ec", 256)
    assert mismatch["cert.signature_algorithm"] == "ecdsa-with-SHA256"
    assert (mismatch["cert.self_signed"], mismatch["cert.hostname_match"]) == (True, False)
    assert mismatch["chain.valid"] is False and "self-signed" in mismatch["chain.error"]
    assert mismatch["cert.sans"] == ["other.example"]
    good = estate.seen[("s_server", "good")].tls.data
    assert (good["cert.key_type"], good["cert.key_bits"], good["chain.valid"], good["chain.error"]) == (
        "rsa",
        3072,
        True,
        None,
    )
    assert 199 < good["cert.days_to_expiry"] <= 200


@pytest.mark.parametrize("server", SERVERS)
def test_rules_on_each_server(estate: Estate, server: str) -> None:
    ids = ("tls_cert_not_expired", "tls_cert_trusted_for_host", "tls_cert_chain_valid")
    assert _verdicts(estate.seen[(server, "expired")].tls, *ids) == dict(zip(ids, (True, False, True), strict=True))
    # self-signed: tls_cert_trusted_for_host's finding; the chain rule does not judge it
    assert _verdicts(estate.seen[(server, "mismatch")].tls, *ids) == dict(zip(ids, (False, True, None), strict=True))
    assert _verdicts(estate.seen[(server, "good")].tls, *ids) == dict.fromkeys(ids, False)


# -- defect 10a: one chain verdict for both probes -------------------------------------------------
def test_both_probes_give_the_same_chain_verdict_on_every_server(estate: Estate) -> None:
    for key, probed in estate.seen.items():
        assert probed.tls.data["chain.valid"] == probed.scan.data["chain.trusted"], key
        assert probed.tls.data["chain.trust_error"] == probed.scan.data["chain.trust_error"], key


@pytest.fixture(scope="module")
def weak_chains(estate: Estate, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Probed]]:
    """A SHA-1-signed and an RSA-1024 leaf from the trusted lab CA, served by s_server and nginx."""
    openssl = require_tool("openssl")
    nginx = require_tool("nginx")
    pki = estate.pki
    leaves = {"sha1": pki.leaf("sha1", digest="sha1"), "rsa1024": pki.leaf("rsa1024", key="rsa1024")}
    lab = Lab(tmp_path_factory.mktemp("tls_weak"))
    try:
        out: dict[str, Probed] = {}
        for name, leaf in leaves.items():
            # OpenSSL refuses to serve such certificates at its default security level
            s_port = lab.s_server(f"s-{name}", openssl, leaf, "-cipher", "ALL:@SECLEVEL=0")
            n_port = lab.nginx(f"n-{name}", nginx, leaf)
            for server, port in (("s_server", s_port), ("nginx", n_port)):
                out[f"{server}-{name}"] = Probed(
                    port, probe_once("tls", port, pki.ca_cert), probe_once("tls_scan", port, pki.ca_cert)
                )
        yield out
    finally:
        lab.close()


def test_sha1_and_weak_key_chains_are_not_trusted_by_either_probe(weak_chains: dict[str, Probed]) -> None:
    for key, probed in weak_chains.items():
        tls, scan = probed.tls.data, probed.scan.data
        assert probed.tls.status == probed.scan.status == ObservationStatus.OK, key
        assert (tls["chain.valid"], scan["chain.trusted"]) == (False, False), key
        assert tls["chain.error"] == scan["chain.trust_error"], key
        assert tls["cert.self_signed"] is False and tls["chain.complete"] is True, key  # issued by the lab CA
        if key.endswith("sha1"):
            assert "sha1" in tls["chain.error"], key
            assert tls["cert.signature_algorithm"] == "sha1WithRSAEncryption" and tls["cert.signature_sha1"], key
            assert _verdicts(probed.scan, "tls_cert_signature_not_sha1") == {"tls_cert_signature_not_sha1": True}
        else:
            assert "1024 bits is too weak" in tls["chain.error"], key
            assert _verdicts(probed.scan, "tls_cert_rsa_key_min_2048") == {"tls_cert_rsa_key_min_2048": True}
        assert _verdicts(probed.tls, "tls_cert_chain_valid") == {"tls_cert_chain_valid": True}, key


# -- errors are observations -------------------------------------------------------------------
class _NotTls(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _NotTlsHandler)


class _NotTlsHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(2)
        with contextlib.suppress(OSError):
            self.request.recv(4096)
            self.request.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")


def test_a_failed_handshake_is_an_error_observation_not_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    server = _NotTls()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        with caplog.at_level(logging.WARNING):
            not_tls = probe_once("tls", server.server_address[1], None, tls_timeout=1)
            closed = probe_once("tls", free_port(), None, tls_timeout=1)
    finally:
        server.shutdown()
        server.server_close()
    assert (not_tls.status, not_tls.data["error_kind"]) == (ObservationStatus.ERROR, "protocol")
    assert "TLS handshake failed" in (not_tls.error or "")
    assert (closed.status, closed.data["error_kind"]) == (ObservationStatus.ERROR, "refused")
    for obs in (not_tls, closed):
        assert "cert.subject" not in obs.data and "chain.valid" not in obs.data  # no made-up facts
        assert set(_verdicts(obs, "tls_cert_not_expired", "tls_cert_chain_valid").values()) == {None}
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- a TLS 1.0-only site is observed, not "unreachable" ----------------------------------------
def test_a_tls1_0_only_site_is_observed_by_both_probes(estate: Estate, tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    try:
        leaf = estate.certs["good"]
        port = lab.s_server("tls10", require_tool("openssl"), leaf, "-tls1", "-cipher", "ALL:@SECLEVEL=0")
        tls, scan = probe_once("tls", port, estate.pki.ca_cert), probe_once("tls_scan", port, estate.pki.ca_cert)
    finally:
        lab.close()
    assert tls.status == scan.status == ObservationStatus.OK
    assert tls.data["tls.protocol"] == "TLSv1"
    assert scan.data["tls.versions_offered"] == ["TLSv1"]
    assert tls.data["chain.valid"] is scan.data["chain.trusted"] is True
    assert _verdicts(tls, "tls_protocol_modern") == {"tls_protocol_modern": True}
    assert _verdicts(scan, "tls_legacy_protocols_disabled") == {"tls_legacy_protocols_disabled": True}
