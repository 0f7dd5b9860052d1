"""tls_scan against real servers on loopback: openssl s_server configurations, a scripted SSLv3/RC4
server (OpenSSL 3 can no longer serve those), and testssl.sh on the same servers for comparison.

The servers are started once per module and each is scanned once; tests read those observations.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from sentinel.collectors.base import ProbeJob
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.tls_cert import TlsProbe
from sentinel.collectors.tls_scan import MAX_CONNECTIONS, TlsScanProbe
from sentinel.collectors.tlswire import TlsParseError, TlsVersion, parse_client_hello_record
from sentinel.collectors.tlswire.server import (
    build_alert,
    build_certificate,
    build_handshake_records,
    build_server_hello,
    build_server_hello_done,
)
from sentinel.config.settings import CollectorSettings
from sentinel.engine.loader import load_rules
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.models import Endpoint, Owner, System
from sentinel.registry.scope import Scope
from sentinel.ruledev.fixtures import FixtureRunner, parse_fixture
from tests.netns import require, require_tool

ROOT = Path(__file__).resolve().parents[1]
NEW_RULES = (
    "tls_legacy_protocols_disabled",
    "tls_weak_suites_rejected",
    "tls_cert_rsa_key_min_2048",
    "tls_cert_signature_not_sha1",
    "tls_chain_complete",
    "tls_ocsp_stapling_enabled",
    "tls_forward_secrecy_enabled",
)
HOST = "127.0.0.1"
OCSP = "http://ocsp.lab.test/"  # named in the lab leaves, never queried


# -- certificates ----------------------------------------------------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def ca_cert(subject: str, issuer: x509.Certificate | None, key: Any, signer: Any) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


@dataclass
class Pki:
    """Root CA → intermediate CA → leaves, written to files for s_server."""

    folder: Path
    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    inter: x509.Certificate
    inter_key: ec.EllipticCurvePrivateKey

    def leaf(self, stem: str, key: Any, days: int) -> tuple[Path, Path, x509.Certificate]:
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{stem}.test"))
            .issuer_name(self.inter.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.inter_key.public_key()), False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            # as a public CA's leaf: it names an OCSP responder, so stapling is judged
            .add_extension(
                x509.AuthorityInformationAccess(
                    [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP))]
                ),
                critical=False,
            )
            .sign(self.inter_key, hashes.SHA256())
        )
        cert_path, key_path = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        cert_path.write_bytes(_pem(cert))
        key_path.write_bytes(_key_pem(key))
        return cert_path, key_path, cert

    def ocsp_good(self, cert: x509.Certificate, stem: str) -> Path:
        now = datetime.now(UTC)
        response = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=cert,
                issuer=self.inter,
                algorithm=hashes.SHA256(),
                cert_status=ocsp.OCSPCertStatus.GOOD,
                this_update=now,
                next_update=now + timedelta(days=1),
                revocation_time=None,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.inter)
            .sign(self.inter_key, hashes.SHA256())
        )
        path = self.folder / f"{stem}.ocsp.der"
        path.write_bytes(response.public_bytes(serialization.Encoding.DER))
        return path


def make_pki(folder: Path) -> Pki:
    root_key, inter_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = ca_cert("Sentinel Test Root", None, root_key, root_key)
    pki = Pki(folder, root, root_key, ca_cert("Sentinel Test Issuing CA", root, inter_key, root_key), inter_key)
    (folder / "root.crt").write_bytes(_pem(pki.root))
    (folder / "inter.crt").write_bytes(_pem(pki.inter))
    return pki


def legacy_self_signed(openssl: str, folder: Path) -> tuple[Path, Path]:
    """RSA-1024 with a SHA-1 signature: `cryptography` refuses to sign SHA-1, openssl still does."""
    cert, key = folder / "legacy.crt", folder / "legacy.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:1024", "-sha1", "-nodes", "-days", "20",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=legacy.test",
         "-addext", f"subjectAltName=IP:{HOST}"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


# -- servers ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not listen within {limit} s")


class LegacyServer(socketserver.ThreadingTCPServer):
    """Answers like an SSLv3-only server with RC4, 3DES and EXPORT suites (client's order wins)."""

    daemon_threads = True
    allow_reuse_address = True
    SUITES = (0x0005, 0x000A, 0x0003, 0x0008)

    def __init__(self, cert_der: bytes) -> None:
        self.cert_der = cert_der
        super().__init__((HOST, 0), _LegacyHandler)


class _LegacyHandler(socketserver.BaseRequestHandler):
    server: LegacyServer

    def handle(self) -> None:
        self.request.settimeout(3)
        data = b""
        with contextlib.suppress(OSError):
            while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                data += chunk
        try:
            hello = parse_client_hello_record(data)
        except TlsParseError:
            return
        version = TlsVersion.SSL3
        suite = next((s for s in hello.suites if s in self.server.SUITES), None)
        if suite is None or hello.legacy_version < TlsVersion.SSL3:
            self.request.sendall(build_alert(40, version))
            return
        flight = build_handshake_records(
            version,
            build_server_hello(version, suite),
            build_certificate([self.server.cert_der]),
            build_server_hello_done(),
        )
        with contextlib.suppress(OSError):
            self.request.sendall(flight)
            self.request.recv(1)


class HttpOnly(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _HttpHandler)


class _HttpHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(2)
        with contextlib.suppress(OSError):
            self.request.recv(4096)
            self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


class Silent(socketserver.ThreadingTCPServer):
    """Accepts connections and never says a word (a stalled TLS terminator)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _SilentHandler)


class _SilentHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(3)
        with contextlib.suppress(OSError):
            while self.request.recv(4096):
                continue  # read and discard until the client hangs up: this server never answers


@dataclass
class Scanned:
    port: int
    obs: Observation
    sent: int  # connections ScopedNetwork admitted to the address


def scan(port: int, ca_file: Path | None = None, tls_timeout: float = 3) -> tuple[Observation, int]:
    settings = CollectorSettings(
        probes=["tls_scan"],
        per_target_rate=200,
        per_target_burst=50,
        tls_scan={"ca_file": ca_file},
        tls_timeout=tls_timeout,
    )
    probe = TlsScanProbe(settings)
    job = ProbeJob("tls_scan", "sys-test", HOST, f"{HOST}:{port}", ports=(port,))

    async def go() -> tuple[Observation, int]:
        net = ScopedNetwork(Scope(allow=["127.0.0.0/8"]), settings)
        try:
            [obs] = await probe.run(job, net)
            return obs, net.sent[HOST]
        finally:
            await net.close()

    return asyncio.run(go())


S_SERVER_ARGS: dict[str, list[str]] = {
    # TLS 1.0-1.2, static RSA preferred, NULL and anonymous suites too; SHA-1 RSA-1024 self-signed
    "legacy": ["-no_tls1_3", "-serverpref", "-cipher", "AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256:AECDH-AES128-SHA:"
               "NULL-SHA:@SECLEVEL=0"],
    # TLS 1.2-1.3, full chain, OCSP stapled
    "modern": ["-no_tls1", "-no_tls1_1"],
    # TLS 1.2-1.3, RSA-2048 leaf without its intermediate, nothing stapled
    "incomplete": ["-no_tls1", "-no_tls1_1"],
    # TLS 1.3 only: the chain is encrypted, fetched through `ssl`
    "tls13": ["-tls1_3"],
}  # fmt: skip


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Scanned]]:
    openssl = require_tool("openssl")
    folder = tmp_path_factory.mktemp("tls_scan")
    pki = make_pki(folder)
    legacy_cert, legacy_key = legacy_self_signed(openssl, folder)
    modern_cert, modern_key, modern_x509 = pki.leaf("modern", ec.generate_private_key(ec.SECP256R1()), 200)
    inc_cert, inc_key, _ = pki.leaf("incomplete", rsa.generate_private_key(65537, 2048), 90)
    chain = ["-cert_chain", str(folder / "inter.crt")]
    files: dict[str, tuple[Path, Path, list[str]]] = {
        "legacy": (legacy_cert, legacy_key, []),
        "modern": (modern_cert, modern_key, [*chain, "-status_file", str(pki.ocsp_good(modern_x509, "modern"))]),
        "incomplete": (inc_cert, inc_key, []),
        "tls13": (modern_cert, modern_key, chain),
    }
    procs: list[subprocess.Popen[bytes]] = []
    servers: list[socketserver.ThreadingTCPServer] = []
    try:
        ports: dict[str, int] = {}
        for name, (cert, key, extra) in files.items():
            port = free_port()
            cmd = [openssl, "s_server", "-accept", f"{HOST}:{port}", "-cert", str(cert), "-key", str(key),
                   "-quiet", *extra, *S_SERVER_ARGS[name]]  # fmt: skip
            log = folder / f"{name}.log"  # a file, not a pipe: a full pipe would stall the server
            with log.open("wb") as sink:
                procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink))
            wait_listening(port, procs[-1], log)
            ports[name] = port
        legacy_der = x509.load_pem_x509_certificate(legacy_cert.read_bytes()).public_bytes(serialization.Encoding.DER)
        scripted: list[tuple[str, socketserver.ThreadingTCPServer]] = [
            ("sslv3", LegacyServer(legacy_der)),
            ("http", HttpOnly()),
            ("badcert", LegacyServer(b"\x30\x03not a certificate")),
        ]
        for name, server in scripted:
            servers.append(server)
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
            ports[name] = server.server_address[1]
        ports["closed"] = free_port()
        out: dict[str, Scanned] = {}
        for name, port in ports.items():
            obs, sent = scan(port, ca_file=folder / "root.crt")
            out[name] = Scanned(port, obs, sent)
        yield out
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


# -- what the probe reports ------------------------------------------------------------------
def test_versions_offered_are_every_version_the_server_accepts(estate: dict[str, Scanned]) -> None:
    assert estate["legacy"].obs.data["tls.versions_offered"] == ["TLSv1", "TLSv1.1", "TLSv1.2"]
    assert estate["modern"].obs.data["tls.versions_offered"] == ["TLSv1.2", "TLSv1.3"]
    assert estate["tls13"].obs.data["tls.versions_offered"] == ["TLSv1.3"]
    assert estate["sslv3"].obs.data["tls.versions_offered"] == ["SSLv3"]
    legacy = estate["legacy"].obs.data
    assert (legacy["tls.offers_sslv3"], legacy["tls.offers_tls1_0"], legacy["tls.offers_tls1_1"]) == (False, True, True)
    assert estate["sslv3"].obs.data["tls.offers_sslv3"] is True
    assert estate["modern"].obs.data["tls.offers_tls1_1"] is False


def test_weak_suites_are_listed_by_iana_name(estate: dict[str, Scanned]) -> None:
    legacy = estate["legacy"].obs.data
    assert legacy["tls.weak_suites"] == ["TLS_RSA_WITH_NULL_SHA", "TLS_ECDH_anon_WITH_AES_128_CBC_SHA"]
    assert legacy["tls.weak_families"] == ["anon", "null"]
    sslv3 = estate["sslv3"].obs.data
    assert sorted(sslv3["tls.weak_suites"]) == sorted(
        ["TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
         "TLS_RSA_EXPORT_WITH_RC4_40_MD5", "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA"]
    )  # fmt: skip
    assert sslv3["tls.weak_families"] == ["3des", "export", "rc4"]
    assert estate["modern"].obs.data["tls.weak_suites"] == []
    assert estate["tls13"].obs.data["tls.weak_suites"] == []


def test_forward_secrecy_of_the_preferred_suite(estate: dict[str, Scanned]) -> None:
    legacy = estate["legacy"].obs.data
    assert legacy["tls.preferred_suite"] == "TLS_RSA_WITH_AES_128_CBC_SHA"
    assert legacy["tls.forward_secrecy"] is False
    modern = estate["modern"].obs.data
    assert modern["tls.preferred_version"] == "TLSv1.3"
    assert modern["tls.forward_secrecy"] is True
    assert modern["tls.legacy_suite"].startswith("TLS_ECDHE_")


def test_certificate_key_signature_and_expiry(estate: dict[str, Scanned]) -> None:
    legacy = estate["legacy"].obs.data
    assert (legacy["cert.key_type"], legacy["cert.key_bits"]) == ("rsa", 1024)
    assert legacy["cert.signature_sha1"] is True
    assert legacy["cert.signature_algorithm"] == "sha1WithRSAEncryption"
    assert legacy["cert.self_signed"] is True
    assert 19 < legacy["cert.days_to_expiry"] <= 20
    modern = estate["modern"].obs.data
    assert (modern["cert.key_type"], modern["cert.key_bits"], modern["cert.signature_sha1"]) == ("ec", 256, False)
    assert modern["chain.sha1_signed"] == []
    assert 199 < modern["cert.days_to_expiry"] <= 200


def test_chain_completeness_and_trust(estate: dict[str, Scanned]) -> None:
    modern = estate["modern"].obs.data
    assert (modern["chain.complete"], modern["chain.trusted"]) == (True, True)
    assert (modern["chain.intermediates_sent"], modern["chain.intermediates_needed"]) == (1, 1)
    incomplete = estate["incomplete"].obs.data
    assert (incomplete["chain.complete"], incomplete["chain.trusted"]) == (False, False)
    assert incomplete["chain.intermediates_sent"] == 0
    assert incomplete["chain.missing_issuer"] == "CN=Sentinel Test Issuing CA"
    legacy = estate["legacy"].obs.data  # self-signed: complete, but nothing vouches for it
    assert (legacy["chain.complete"], legacy["chain.trusted"]) == (True, False)
    tls13 = estate["tls13"].obs.data  # the chain came through `ssl`, still with its intermediate
    assert (tls13["chain.sent"], tls13["chain.complete"], tls13["chain.trusted"]) == (2, True, True)


def test_ocsp_stapling_seen_only_when_the_server_staples(estate: dict[str, Scanned]) -> None:
    assert estate["modern"].obs.data["ocsp.stapled"] is True
    assert estate["modern"].obs.data["ocsp.response_bytes"] > 0
    assert estate["modern"].obs.data["ocsp.cert_status"] == "good"
    assert estate["incomplete"].obs.data["ocsp.stapled"] is False
    assert estate["tls13"].obs.data["ocsp.stapled"] is None  # encrypted in TLS 1.3: cannot tell


def test_connections_are_bounded_and_all_went_through_scoped_network(estate: dict[str, Scanned]) -> None:
    probe = TlsScanProbe(CollectorSettings())
    for name, scanned in estate.items():
        connections = scanned.obs.data["scan.connections"]
        assert connections <= MAX_CONNECTIONS == probe.budget(ProbeJob("tls_scan", "s", HOST, "t", ports=(1,)))
        assert scanned.sent == connections, name
    assert estate["modern"].obs.data["scan.connections"] == len(TlsVersion) + 5  # one hello per family


def test_a_server_that_is_not_tls_or_not_listening_is_an_error_not_a_verdict(estate: dict[str, Scanned]) -> None:
    http = estate["http"].obs
    assert http.status == ObservationStatus.ERROR
    assert http.data["error_kind"] == "protocol"
    assert "not TLS" in (http.error or "")
    closed = estate["closed"].obs
    assert closed.status == ObservationStatus.ERROR
    assert closed.data["error_kind"] == "refused"
    assert "tls.versions_offered" not in closed.data


def test_a_server_that_never_answers_is_a_timeout_and_every_rule_unknown() -> None:
    server = Silent()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        obs, sent = scan(server.server_address[1], tls_timeout=0.3)
    finally:
        server.shutdown()
        server.server_close()
    assert obs.status == ObservationStatus.ERROR
    assert obs.data["error_kind"] == "timeout"
    assert sent == len(TlsVersion)  # no weak-suite hellos after the versions said nothing
    assert set(_verdicts(obs).values()) == {None}


def test_a_certificate_that_does_not_parse_is_reported_not_raised(estate: dict[str, Scanned]) -> None:
    bad = estate["badcert"].obs
    assert bad.status == ObservationStatus.OK
    assert bad.data["tls.versions_offered"] == ["SSLv3"]
    assert "cert.parse_error" in bad.data
    assert "does not parse" in bad.data["chain.error"]
    assert _verdicts(bad)["tls_chain_complete"] is None  # nothing known about the chain


def test_out_of_scope_target_is_never_contacted() -> None:
    settings = CollectorSettings(probes=["tls_scan"])
    job = ProbeJob("tls_scan", "s", "127.0.0.1", "127.0.0.1:443", ports=(443,))

    async def go() -> ScopedNetwork:
        net = ScopedNetwork(Scope(allow=["198.18.0.0/16"]), settings)
        with pytest.raises(Exception, match="outside the declared scope"):
            await TlsScanProbe(settings).run(job, net)
        return net

    assert sum(asyncio.run(go()).sent.values()) == 0


def test_plan_picks_the_same_endpoints_as_the_tls_probe() -> None:
    system = System(
        id="portal",
        name="Portal",
        owner=Owner(department="IT"),
        tier="city",
        mlps_level=3,
        endpoints=[
            Endpoint(url="https://portal.example.gov.cn/"),
            Endpoint(url="http://plain.example.gov.cn/"),
            Endpoint(host="mail.example.gov.cn", ports=[25, 993, 8443]),
        ],
    )
    settings = CollectorSettings()
    scan_jobs = list(TlsScanProbe(settings).plan(system))
    tls_jobs = list(TlsProbe(settings).plan(system))
    assert [j.target for j in scan_jobs] == [j.target for j in tls_jobs] == [
        "portal.example.gov.cn:443", "mail.example.gov.cn:993", "mail.example.gov.cn:8443",
    ]  # fmt: skip
    assert {j.probe for j in scan_jobs} == {"tls_scan"}


# -- the rules, on these observations --------------------------------------------------------
def _verdicts(obs: Observation) -> dict[str, bool | None]:
    rules = {r.id: r for r in load_rules([ROOT / "rules" / "tls"]) if r.id in NEW_RULES}
    assert set(rules) == set(NEW_RULES)
    return {rule_id: rule.evaluate(obs) for rule_id, rule in rules.items()}


def test_rules_on_the_legacy_server(estate: dict[str, Scanned]) -> None:
    assert _verdicts(estate["legacy"].obs) == {
        "tls_legacy_protocols_disabled": True,
        "tls_weak_suites_rejected": True,
        "tls_cert_rsa_key_min_2048": True,
        "tls_cert_signature_not_sha1": True,
        "tls_chain_complete": False,  # self-signed is complete (tls_cert_trusted_for_host covers it)
        "tls_ocsp_stapling_enabled": None,  # nothing to staple for a self-signed certificate: not judged
        "tls_forward_secrecy_enabled": True,
    }


def test_rules_on_the_modern_server(estate: dict[str, Scanned]) -> None:
    assert _verdicts(estate["modern"].obs) == dict.fromkeys(NEW_RULES, False)


def test_rules_on_the_incomplete_chain_server(estate: dict[str, Scanned]) -> None:
    verdicts = _verdicts(estate["incomplete"].obs)
    assert verdicts["tls_chain_complete"] is True
    assert verdicts["tls_ocsp_stapling_enabled"] is True
    assert verdicts["tls_cert_rsa_key_min_2048"] is False  # RSA 2048 is enough
    assert verdicts["tls_legacy_protocols_disabled"] is False


def test_rules_on_the_sslv3_server(estate: dict[str, Scanned]) -> None:
    verdicts = _verdicts(estate["sslv3"].obs)
    assert verdicts["tls_legacy_protocols_disabled"] is True
    assert verdicts["tls_weak_suites_rejected"] is True
    assert verdicts["tls_forward_secrecy_enabled"] is True  # prefers static-RSA 3DES


def test_rules_are_unknown_when_the_server_could_not_be_observed(estate: dict[str, Scanned]) -> None:
    assert set(_verdicts(estate["closed"].obs).values()) == {None}


def test_rule_fixtures_pass() -> None:
    rules = load_rules([ROOT / "rules"])
    runner = FixtureRunner(rules)
    for rule_id in NEW_RULES:
        loaded = parse_fixture(ROOT / "rules" / "tests" / f"{rule_id}.yaml")
        expects = {case.expect for case in loaded.fixture.cases}
        assert {"present", "absent"} <= expects, rule_id
        results = runner.run(loaded)
        assert results
        assert all(r.ok for r in results), [(r.case, r.message) for r in results if not r.ok]


# -- testssl.sh on the same servers ----------------------------------------------------------
TESTSSL_VERSIONS = {"SSLv3": "SSLv3", "TLS1": "TLSv1", "TLS1_1": "TLSv1.1", "TLS1_2": "TLSv1.2", "TLS1_3": "TLSv1.3"}


def _testssl(tool: str, port: int, out: Path) -> dict[str, str]:
    # testssl probes openssl's options with `s_client -connect invalid.`, a DNS query to the system
    # resolver; NXCONNECT points that at loopback so no packet leaves the machine (--nodns none: no lookups)
    env = {**os.environ, "TERM": "dumb", "NXCONNECT": "127.0.0.1:0"}
    subprocess.run(
        [tool, "--quiet", "--warnings", "off", "--color", "0", "--nodns", "none", "--protocols",
         "--server-defaults", "--jsonfile", str(out), f"{HOST}:{port}"],
        capture_output=True, timeout=120, env=env, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    require(out.exists(), f"testssl.sh wrote no JSON for port {port}")
    return {entry["id"]: entry["finding"] for entry in json.loads(out.read_text())}


def test_agrees_with_testssl_on_versions_expiry_and_self_signed(estate: dict[str, Scanned], tmp_path: Path) -> None:
    tool = require_tool("testssl")
    names = ("legacy", "incomplete")  # TLS 1.0-1.2 + self-signed; TLS 1.2-1.3 + CA-issued
    with ThreadPoolExecutor(len(names)) as pool:
        reports = dict(
            zip(
                names,
                pool.map(lambda n: _testssl(tool, estate[n].port, tmp_path / f"{n}.json"), names),
                strict=True,
            )
        )
    for name, report in reports.items():
        data = estate[name].obs.data
        theirs = sorted(ours for key, ours in TESTSSL_VERSIONS.items() if report.get(key, "").startswith("offered"))
        assert theirs == sorted(data["tls.versions_offered"]), name
        # testssl prints notAfter to the minute in UTC
        ours_after = datetime.fromisoformat(data["cert.not_after"]).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        assert report["cert_notAfter"] == ours_after, name
        assert ("self signed" in report["cert_chain_of_trust"]) == data["cert.self_signed"], name
