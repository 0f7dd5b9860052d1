"""gm_tls (TLCP and the TLS 1.3 SM suites) against real servers on loopback.

- GmSSL 3.1.1's own TLCP and TLS 1.3 server state machines (`tlcp_do_accept`, `tls13_do_accept` in
  libgmssl, driven through ctypes on a socket bound to 127.0.0.1: the `gmssl tlcp_server` tool binds
  every interface and exits after one failed handshake), with SM2 double certificates made by `gmssl`;
- a TLCP responder written here from GM/T 0024-2014 (ServerHello 0x0101, Certificate with the signing
  then the encryption certificate, ServerHelloDone), with SM2 certificates made by `openssl`, one of
  them expired; it prefers two GCM suites so suite enumeration is exercised;
- openssl s_server (plain TLS 1.2/1.3), a plain HTTP service, hostile responders and a closed port.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import itertools
import socket
import socketserver
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sentinel.collectors.base import ProbeJob
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.tlcp_probe import MAX_CONNECTIONS, GmTlsProbe, tlcp_certificate_facts
from sentinel.collectors.tlswire import ServerFlightParser, TlsParseError, build_client_hello, parse_client_hello_record
from sentinel.collectors.tlswire.gm import (
    GROUP_CURVE_SM2,
    SIG_SM2SIG_SM3,
    TLCP_SUITES,
    TLCP_VERSION,
    TLS13_SM_SUITES,
    build_tlcp_client_hello,
    on_sm2_curve,
    sm2_key_share,
    sm2_public_point,
    tls13_sm_hello_spec,
)
from sentinel.collectors.tlswire.gmcert import DerError, gm_certificate_facts, spki_algorithm
from sentinel.collectors.tlswire.records import Extension, Reader, TlsVersion
from sentinel.collectors.tlswire.server import (
    build_alert,
    build_certificate,
    build_handshake_records,
    build_server_hello,
    build_server_hello_done,
)
from sentinel.compliance.frameworks import Mapping, load_frameworks
from sentinel.config.settings import CollectorSettings
from sentinel.engine.loader import load_rules
from sentinel.models import Observation, ObservationStatus
from sentinel.registry.scope import Scope
from sentinel.ruledev.fixtures import FixtureRunner, parse_fixture
from tests.netns import require, require_tool

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
GM_RULES = (
    "gm_tls_not_offered",
    "tlcp_cert_not_expired",
    "tlcp_cert_not_expiring_soon",
    "tlcp_double_certificate_present",
)
PASS = "1234"


# -- certificates ----------------------------------------------------------------------------
def _run(*cmd: str, cwd: Path) -> None:
    subprocess.run(list(cmd), cwd=cwd, check=True, capture_output=True, timeout=30)


def openssl_sm2_pki(openssl: str, folder: Path) -> dict[str, Path]:
    """SM2 CA, signing certificate (60 days), encryption certificate (expired yesterday), PEM files."""
    _run(openssl, "genpkey", "-algorithm", "SM2", "-out", "ca.key", cwd=folder)
    _run(openssl, "req", "-x509", "-new", "-key", "ca.key", "-sm3", "-subj", "/C=CN/O=Sentinel Test/CN=SM2 Test CA",
         "-days", "365", "-out", "ca.pem", cwd=folder)  # fmt: skip
    for stem, usage, days in (("sign", "digitalSignature", "60"), ("enc", "keyEncipherment,dataEncipherment", "-1")):
        _run(openssl, "genpkey", "-algorithm", "SM2", "-out", f"{stem}.key", cwd=folder)
        _run(openssl, "req", "-new", "-key", f"{stem}.key", "-sm3", "-subj", f"/C=CN/CN=tlcp-{stem}.test",
             "-out", f"{stem}.csr", cwd=folder)  # fmt: skip
        (folder / f"{stem}.ext").write_text(f"keyUsage=critical,{usage}\nbasicConstraints=CA:FALSE\n")
        _run(openssl, "x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-sm3",
             "-days", days, "-extfile", f"{stem}.ext", "-out", f"{stem}.pem", cwd=folder)  # fmt: skip
    return {name: folder / f"{name}.pem" for name in ("ca", "sign", "enc")}


def gmssl_double_certs(gmssl: str, folder: Path) -> dict[str, Path]:
    """What the GmSSL TLCP demo sets up: CA, signing and encryption key pairs and certificates."""
    _run(gmssl, "sm2keygen", "-pass", PASS, "-out", "cakey.pem", cwd=folder)
    _run(gmssl, "certgen", "-C", "CN", "-O", "GmSSL Test", "-CN", "GmSSL Test CA", "-days", "365", "-key",
         "cakey.pem", "-pass", PASS, "-out", "cacert.pem", "-key_usage", "keyCertSign", "-ca", cwd=folder)  # fmt: skip
    for stem, usage, days in (("sign", "digitalSignature", "200"), ("enc", "keyEncipherment", "20")):
        _run(gmssl, "sm2keygen", "-pass", PASS, "-out", f"{stem}key.pem", cwd=folder)
        _run(gmssl, "reqgen", "-C", "CN", "-CN", "localhost", "-key", f"{stem}key.pem", "-pass", PASS,
             "-out", f"{stem}req.pem", cwd=folder)  # fmt: skip
        _run(gmssl, "reqsign", "-in", f"{stem}req.pem", "-days", days, "-key_usage", usage, "-cacert", "cacert.pem",
             "-key", "cakey.pem", "-pass", PASS, "-out", f"{stem}cert.pem", cwd=folder)  # fmt: skip
    double = folder / "double.pem"
    double.write_bytes(b"".join((folder / f).read_bytes() for f in ("signcert.pem", "enccert.pem", "cacert.pem")))
    return {"double": double, "sign": folder / "signcert.pem", "signkey": folder / "signkey.pem",
            "enckey": folder / "enckey.pem"}  # fmt: skip


def der(pem: Path) -> bytes:
    return x509.load_pem_x509_certificate(pem.read_bytes()).public_bytes(serialization.Encoding.DER)


# -- servers ---------------------------------------------------------------------------------
def _read_record(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(OSError):
        while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


class Responder(socketserver.ThreadingTCPServer):
    """Reads one ClientHello record and answers with `answer(hello bytes)` (then waits for the client)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: Callable[[bytes], bytes]) -> None:
        self.answer = answer
        super().__init__((HOST, 0), _ResponderHandler)


class _ResponderHandler(socketserver.BaseRequestHandler):
    server: Responder

    def handle(self) -> None:
        self.request.settimeout(3)
        data = _read_record(self.request)
        with contextlib.suppress(OSError):
            self.request.sendall(self.server.answer(data))
            self.request.recv(1)


def tlcp_answer(preference: tuple[int, ...], chain: list[bytes]) -> Callable[[bytes], bytes]:
    """A TLCP server from the specification: the first suite of its own preference that the client offers."""

    def answer(data: bytes) -> bytes:
        try:
            hello = parse_client_hello_record(data)
        except TlsParseError:
            return b""
        if data[1:3] != TLCP_VERSION.to_bytes(2, "big") or hello.legacy_version != TLCP_VERSION:
            return build_alert(70, TLCP_VERSION)  # protocol_version, in a TLCP record like GmSSL's
        suite = next((s for s in preference if s in hello.suites), None)
        if suite is None:
            return build_alert(40, TLCP_VERSION)
        return build_handshake_records(
            TLCP_VERSION, build_server_hello(TLCP_VERSION, suite), build_certificate(chain), build_server_hello_done()
        )

    return answer


class GmsslServer:
    """libgmssl's server handshake on connections accepted from a loopback socket, one thread each."""

    #: opaque room for TLS_CTX / TLS_CONNECT (both well under 1 MiB in GmSSL 3.1.1)
    ROOM = 1 << 21

    def __init__(self, lib: ctypes.CDLL, protocol: int, files: list[str]) -> None:
        self.lib = lib
        self.ctx = ctypes.create_string_buffer(self.ROOM)
        if lib.tls_ctx_init(self.ctx, protocol, 0) != 1:
            raise RuntimeError("tls_ctx_init failed")
        args = [f.encode() for f in files]
        if protocol == TLCP_VERSION:
            loaded = lib.tls_ctx_set_tlcp_server_certificate_and_keys(self.ctx, *args)
        else:
            loaded = lib.tls_ctx_set_certificate_and_key(self.ctx, *args)
        if loaded != 1:
            raise RuntimeError("GmSSL refused the certificates and keys")
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # GmSSL reads the descriptor itself: blocking, with a kernel receive timeout so a probe that
        # hangs up early (it always does) cannot pin the thread
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 3, 0))
        state = ctypes.create_string_buffer(self.ROOM)
        try:
            if self.lib.tls_init(state, self.ctx) == 1 and self.lib.tls_set_socket(state, conn.fileno()) == 1:
                self.handshakes += 1
                self.lib.tls_do_handshake(state)
        finally:
            self.lib.tls_cleanup(state)
            conn.close()

    def close(self) -> None:
        self.sock.close()


# -- scanning --------------------------------------------------------------------------------
@dataclass
class Scanned:
    obs: Observation
    sent: int


def scan(port: int, timeout: float = 3) -> Scanned:
    cfg = CollectorSettings(probes=["gm_tls"], per_target_rate=200, per_target_burst=50, tls_timeout=timeout)
    job = ProbeJob("gm_tls", "sys-test", HOST, f"{HOST}:{port}", ports=(port,))

    async def go() -> Scanned:
        net = ScopedNetwork(Scope(allow=["127.0.0.0/8"]), cfg)
        try:
            [obs] = await GmTlsProbe(cfg).run(job, net)
            return Scanned(obs, net.sent[HOST])
        finally:
            await net.close()

    return asyncio.run(go())


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _serve(server: socketserver.ThreadingTCPServer) -> int:
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return int(server.server_address[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return openssl_sm2_pki(require_tool("openssl"), tmp_path_factory.mktemp("sm2"))


@pytest.fixture(scope="module")
def estate(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Scanned]]:
    openssl = require_tool("openssl")
    folder = tmp_path_factory.mktemp("plain")
    _run(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         "ec.key", "-out", "ec.pem", "-subj", "/CN=plain.test", "-days", "30", cwd=folder)  # fmt: skip
    chain = [der(pki["sign"]), der(pki["enc"]), der(pki["ca"])]
    servers = [
        ("spec", Responder(tlcp_answer((0xE051, 0xE053), chain))),
        ("single_cert", Responder(tlcp_answer((0xE013,), [der(pki["sign"])]))),
        ("http", Responder(lambda _: b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")),
    ]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ports = {name: _serve(server) for name, server in servers}
        port = free_port()
        log = (folder / "s_server.log").open("wb")
        procs.append(
            subprocess.Popen(
                [openssl, "s_server", "-accept", f"{HOST}:{port}", "-cert", "ec.pem", "-key", "ec.key", "-quiet"],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        )
        _wait_listening(port)
        ports["openssl"] = port
        ports["closed"] = free_port()
        yield {name: scan(p) for name, p in ports.items()}
    finally:
        for _, server in servers:
            server.shutdown()
            server.server_close()
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


def _wait_listening(port: int) -> None:
    for _ in range(200):
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        threading.Event().wait(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@dataclass
class GmsslScans:
    tlcp: Scanned
    tls13: Scanned
    handshakes: int  # handshakes libgmssl started: the probe's hellos reached GmSSL's own state machine


@pytest.fixture(scope="module")
def gmssl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GmsslScans]:
    tool = require_tool("gmssl")
    name = ctypes.util.find_library("gmssl")
    require(name is not None, "needs libgmssl (GmSSL 3, built with the gmssl tool)")
    assert name is not None
    lib = ctypes.CDLL(name)
    files = gmssl_double_certs(tool, tmp_path_factory.mktemp("gmssl"))
    tlcp = GmsslServer(
        lib, TLCP_VERSION, [str(files["double"]), str(files["signkey"]), PASS, str(files["enckey"]), PASS]
    )
    tls13 = GmsslServer(lib, TlsVersion.TLS1_3, [str(files["sign"]), str(files["signkey"]), PASS])
    try:
        scans = scan(tlcp.port), scan(tls13.port)
        yield GmsslScans(*scans, handshakes=tlcp.handshakes + tls13.handshakes)
    finally:
        tlcp.close()
        tls13.close()


# -- real GmSSL ------------------------------------------------------------------------------
def test_gmssl_tlcp_server_is_detected_with_its_double_certificate(gmssl: GmsslScans) -> None:
    obs = gmssl.tlcp.obs
    assert obs.status == ObservationStatus.OK, obs.error
    d = obs.data
    assert (d["gm.supported"], d["tlcp.offered"], d["tlcp.answer"]) == (True, True, "server_hello:0x0101")
    assert d["tlcp.suites"] == ["ECC_SM4_CBC_SM3"]  # GmSSL 3.1.1 implements this one suite only
    assert d["tlcp.ecdhe"] is False
    assert d["gm.protocols"] == ["TLCP"]
    # a TLCP-only server refuses TLS 1.3 with an alert in a TLCP record: "not offered", not "not TLS"
    assert (d["tls13_sm.offered"], d["tls13_sm.answer"]) == (False, "alert:protocol_version")
    assert d["tlcp.certificates_sent"] == 3
    assert d["tlcp.sign_cert.key_usage"] == ["digital_signature"]
    assert d["tlcp.enc_cert.key_usage"] == ["key_encipherment"]
    for role in ("sign_cert", "enc_cert"):
        assert d[f"tlcp.{role}.key_type"] == d[f"tlcp.{role}.curve"] == "sm2"
        assert d[f"tlcp.{role}.signature_algorithm"] == "sm2-with-sm3"
        assert d[f"tlcp.{role}.subject"] == "CN=localhost,C=CN"
        assert d[f"tlcp.{role}.issuer"] == "CN=GmSSL Test CA,O=GmSSL Test,C=CN"
    assert 199 < d["tlcp.sign_cert.days_to_expiry"] <= 200
    assert 19 < d["tlcp.enc_cert.days_to_expiry"] <= 20
    assert d["tlcp.cert_min_days_to_expiry"] == d["tlcp.enc_cert.days_to_expiry"]
    assert (d["tlcp.double_certificate"], d["tlcp.certs_sm2"]) == (True, True)
    assert gmssl.tlcp.sent == d["scan.connections"] <= MAX_CONNECTIONS


def test_gmssl_tls13_server_is_detected_with_curve_sm2(gmssl: GmsslScans) -> None:
    d = gmssl.tls13.obs.data
    assert (d["gm.supported"], d["gm.protocols"]) == (True, ["TLSv1.3"])
    assert d["tls13_sm.suites"] == ["TLS_SM4_GCM_SM3"]  # GmSSL 3.1.1 has no CCM
    assert (d["tls13_sm.group"], d["tls13_sm.curve_sm2"], d["tls13_sm.hello_retry"]) == ("curveSM2", True, False)
    assert d["tlcp.offered"] is False and d["tlcp.answer"].startswith("alert:")
    assert "tlcp.sign_cert.subject" not in d  # TLS 1.3 certificates are encrypted: nothing is invented
    assert gmssl.handshakes >= 4


# -- the specification responder, plain TLS, non-TLS -----------------------------------------
def test_spec_responder_lists_every_suite_it_accepts_and_its_expired_encryption_cert(
    estate: dict[str, Scanned], pki: dict[str, Path]
) -> None:
    d = estate["spec"].obs.data
    assert d["tlcp.suites"] == ["ECDHE_SM4_GCM_SM3", "ECC_SM4_GCM_SM3"]
    assert d["tlcp.preferred_suite"] == "ECDHE_SM4_GCM_SM3" and d["tlcp.ecdhe"] is True
    assert d["gm.suites"] == ["ECDHE_SM4_GCM_SM3", "ECC_SM4_GCM_SM3"]
    sign = x509.load_pem_x509_certificate(pki["sign"].read_bytes())
    enc = x509.load_pem_x509_certificate(pki["enc"].read_bytes())
    assert d["tlcp.sign_cert.not_after"] == sign.not_valid_after_utc.isoformat()
    assert d["tlcp.enc_cert.not_after"] == enc.not_valid_after_utc.isoformat()
    assert d["tlcp.sign_cert.serial"] == format(sign.serial_number, "x")
    assert d["tlcp.enc_cert.days_to_expiry"] < 0 < d["tlcp.sign_cert.days_to_expiry"]
    assert d["tlcp.enc_cert.key_usage"] == ["key_encipherment", "data_encipherment"]
    assert d["tlcp.double_certificate"] is True
    # 3 TLCP hellos (two accepted, then a refusal) and 1 TLS 1.3 hello
    assert estate["spec"].sent == d["scan.connections"] == 4


def test_single_certificate_is_not_a_double_certificate(estate: dict[str, Scanned]) -> None:
    d = estate["single_cert"].obs.data
    assert d["tlcp.offered"] is True
    assert (d["tlcp.certificates_sent"], d["tlcp.double_certificate"]) == (1, False)
    assert "tlcp.enc_cert.subject" not in d


def test_plain_tls_server_offers_no_gm(estate: dict[str, Scanned]) -> None:
    obs = estate["openssl"].obs
    assert obs.status == ObservationStatus.OK, obs.error
    d = obs.data
    assert (d["gm.supported"], d["tlcp.offered"], d["tls13_sm.offered"]) == (False, False, False)
    assert d["gm.suites"] == [] and d["tlcp.suites"] == [] and d["tls13_sm.suites"] == []
    assert d["tls13_sm.answer"] == "alert:handshake_failure"


def test_non_tls_and_closed_services_are_errors_not_verdicts(estate: dict[str, Scanned]) -> None:
    for name, kind in (("http", "protocol"), ("closed", "refused")):
        obs = estate[name].obs
        assert obs.status == ObservationStatus.ERROR, name
        assert obs.data["error_kind"] == kind
        assert "gm.supported" not in obs.data


# -- hostile servers -------------------------------------------------------------------------
HOSTILE: dict[str, bytes] = {
    "garbage": bytes(range(256)) * 4,
    "oversized record": b"\x16\x01\x01\xff\xff" + bytes(64),
    "unoffered suite": build_handshake_records(TLCP_VERSION, build_server_hello(TLCP_VERSION, 0x002F)),
    "tls 1.2 answer": build_handshake_records(0x0303, build_server_hello(0x0303, 0xE013), build_server_hello_done()),
    "truncated hello": build_handshake_records(TLCP_VERSION, build_server_hello(TLCP_VERSION, 0xE013)[:20]),
    "endless handshake": b"\x16\x01\x01\x40\x00\x0b\xff\xff\xff" + bytes(16375) + b"\x16\x01\x01\x40\x00" * 40,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_answers_never_read_as_support(name: str) -> None:
    payload = HOSTILE[name]
    with Responder(lambda _: payload) as server:
        port = _serve(server)
        try:
            result = scan(port, timeout=1.5)
        finally:
            server.shutdown()
    d = result.obs.data
    assert d.get("gm.supported") is not True
    assert d.get("tlcp.offered") is not True and d.get("tls13_sm.offered") is not True
    assert result.sent <= MAX_CONNECTIONS


def test_out_of_scope_target_is_never_contacted() -> None:
    cfg = CollectorSettings(probes=["gm_tls"])
    job = ProbeJob("gm_tls", "s", HOST, f"{HOST}:443", ports=(443,))

    async def go() -> ScopedNetwork:
        net = ScopedNetwork(Scope(allow=["198.18.0.0/16"]), cfg)
        with pytest.raises(Exception, match="outside the declared scope"):
            await GmTlsProbe(cfg).run(job, net)
        return net

    assert sum(asyncio.run(go()).sent.values()) == 0


# -- the hellos and the SM2 arithmetic -------------------------------------------------------
def test_tlcp_hello_is_version_0x0101_without_extensions() -> None:
    record = build_tlcp_client_hello(list(TLCP_SUITES))
    assert record[:3] == b"\x16\x01\x01"
    hello = parse_client_hello_record(record)
    assert hello.legacy_version == TLCP_VERSION
    assert hello.suites == (0xE051, 0xE053, 0xE011, 0xE013)
    assert hello.extensions == {}


def test_tls13_sm_hello_offers_curve_sm2_and_sm2sig_sm3() -> None:
    share = sm2_key_share()
    hello = parse_client_hello_record(
        build_client_hello(tls13_sm_hello_spec(list(TLS13_SM_SUITES), "gm.test", share, None))
    )
    assert hello.suites == (0x00C6, 0x00C7) and hello.versions == (TlsVersion.TLS1_3,)
    assert hello.server_name == "gm.test"
    groups = Reader(hello.extensions[Extension.SUPPORTED_GROUPS], "groups").vec16()
    assert groups == GROUP_CURVE_SM2.to_bytes(2, "big")
    algs = Reader(hello.extensions[Extension.SIGNATURE_ALGORITHMS], "sigalgs").vec16()
    assert algs[:2] == SIG_SM2SIG_SM3.to_bytes(2, "big")
    entries = Reader(Reader(hello.extensions[Extension.KEY_SHARE], "key_share").vec16(), "entries")
    assert (entries.u16(), entries.vec16()) == (GROUP_CURVE_SM2, share)
    assert on_sm2_curve(int.from_bytes(share[1:33], "big"), int.from_bytes(share[33:], "big"))


def test_sm2_point_multiplication_agrees_with_openssl(tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    _run(openssl, "genpkey", "-algorithm", "SM2", "-out", "k.pem", cwd=tmp_path)
    text = subprocess.run([openssl, "pkey", "-in", "k.pem", "-text", "-noout"], cwd=tmp_path, check=True,
                          capture_output=True, text=True).stdout  # fmt: skip

    def block(label: str) -> bytes:  # "priv:" / "pub:" followed by indented hex lines
        lines = itertools.takewhile(lambda line: line.startswith(" "), text.split(f"{label}:\n", 1)[1].splitlines())
        return bytes.fromhex("".join(line.strip() for line in lines).replace(":", ""))

    x, y = sm2_public_point(int.from_bytes(block("priv"), "big"))
    assert block("pub")[-65:] == b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


# -- certificates and parser under fuzzing ---------------------------------------------------
def test_certificate_facts_from_openssl_sm2_certificates(pki: dict[str, Path]) -> None:
    now = datetime.now(UTC)
    facts = tlcp_certificate_facts([der(pki["sign"]), der(pki["enc"])], 2, now)
    assert facts["tlcp.sign_cert.subject"] == "CN=tlcp-sign.test,C=CN"
    assert facts["tlcp.sign_cert.issuer"] == "CN=SM2 Test CA,O=Sentinel Test,C=CN"
    assert facts["tlcp.sign_cert.key_type"] == "sm2" and facts["tlcp.enc_cert.ca"] is False
    assert spki_algorithm(x509.load_pem_x509_certificate(pki["ca"].read_bytes()).tbs_certificate_bytes) == (
        "1.2.840.10045.2.1", "1.2.156.10197.1.301")  # fmt: skip
    swapped = tlcp_certificate_facts([der(pki["enc"]), der(pki["sign"])], 2, now)
    assert swapped["tlcp.double_certificate"] is False  # encryption certificate first is not the TLCP order
    broken = tlcp_certificate_facts([b"\x30\x03abc", der(pki["enc"])], 2, now)
    assert "tlcp.sign_cert.parse_error" in broken and broken["tlcp.double_certificate"] is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.integers(min_value=1, max_value=64))
def test_tlcp_flight_parser_only_raises_tls_parse_error(data: bytes, step: int) -> None:
    parser = ServerFlightParser(tlcp=True)
    try:
        for i in range(0, len(data), step):
            parser.feed(data[i : i + step])
    except TlsParseError:
        return
    hello = parser.flight.server_hello
    assert hello is None or hello.legacy_version >> 8 == 3 or hello.legacy_version == TLCP_VERSION


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_der_walk_only_raises_der_error(data: bytes) -> None:
    with contextlib.suppress(DerError):
        key_oid, _ = spki_algorithm(data)
        assert key_oid.count(".") >= 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_sm2_certificates_never_crash_the_facts(pki: dict[str, Path], data: st.DataObject) -> None:
    cert = bytearray(der(pki["sign"]))
    for _ in range(data.draw(st.integers(1, 8))):
        cert[data.draw(st.integers(0, len(cert) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(cert)))
    facts = gm_certificate_facts(bytes(cert[:cut]), datetime.now(UTC))
    assert "parse_error" in facts or "days_to_expiry" in facts


# -- rules and framework ---------------------------------------------------------------------
def _verdicts(obs: Observation) -> dict[str, bool | None]:
    rules = {r.id: r for r in load_rules([ROOT / "rules" / "tls"]) if r.id in GM_RULES}
    assert set(rules) == set(GM_RULES)
    return {rule_id: rule.evaluate(obs) for rule_id, rule in rules.items()}


def test_rules_on_the_observations(estate: dict[str, Scanned]) -> None:
    assert estate["spec"].obs.data["gm.supported"] is True  # support is a fact of the observation, not a finding
    assert _verdicts(estate["spec"].obs) == {
        "gm_tls_not_offered": False,
        "tlcp_cert_not_expired": True,  # the encryption certificate expired yesterday
        "tlcp_cert_not_expiring_soon": False,
        "tlcp_double_certificate_present": False,
    }
    plain = _verdicts(estate["openssl"].obs)
    assert (estate["openssl"].obs.data["gm.supported"], plain["gm_tls_not_offered"]) == (False, True)
    assert plain["tlcp_cert_not_expired"] is None and plain["tlcp_double_certificate_present"] is None
    assert _verdicts(estate["single_cert"].obs)["tlcp_double_certificate_present"] is True
    assert set(_verdicts(estate["http"].obs).values()) <= {None, False}
    assert _verdicts(estate["http"].obs)["gm_tls_not_offered"] is None


def test_rule_fixtures_pass() -> None:
    runner = FixtureRunner(load_rules([ROOT / "rules"]))
    for rule_id in GM_RULES:
        loaded = parse_fixture(ROOT / "rules" / "tests" / f"{rule_id}.yaml")
        assert {"present", "absent"} <= {case.expect for case in loaded.fixture.cases}, rule_id
        results = runner.run(loaded)
        assert results and all(r.ok for r in results), [(r.case, r.message) for r in results if not r.ok]


def test_gbt39786_framework_maps_the_rules_as_evidence() -> None:
    frameworks = load_frameworks()
    [fw] = [f for f in frameworks if f.framework == "gbt39786-l3"]
    mapping = Mapping.build(frameworks, load_rules([ROOT / "rules"]))
    mapped = {req.id: {r.id for r in mapping.rules_for(fw.framework, req.id)} for req in fw.requirements}
    assert "tlcp_cert_not_expired" in mapped["GB/T 39786 8.2 a)"]
    assert "gm_tls_not_offered" in mapped["GB/T 39786 8.2 c)"]
    assert "compliant" not in fw.caveat.lower().replace("non-compliant", "")
