"""Real TLS servers on loopback for the TLS probe tests: openssl s_server, nginx, a Python `ssl` server
that reads before it replies, and tlslite-ng; certificates made with
`cryptography` (SHA-1 ones with openssl, which still signs them).

Every server is a child process (or a daemon thread) on 127.0.0.1 with an ephemeral port, torn down
by `Lab.close()`; nothing listens beyond loopback and no system service is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sentinel.collectors.base import ProbeJob
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.tls_cert import TlsProbe
from sentinel.collectors.tls_scan import TlsScanProbe
from sentinel.config.settings import CollectorSettings
from sentinel.models import Observation
from sentinel.registry.scope import Scope

HOST = "127.0.0.1"
SCOPE = Scope(allow=["127.0.0.0/8"])


# -- certificates ----------------------------------------------------------------------------
def openssl_run(openssl: str, *args: str) -> None:
    done = subprocess.run([openssl, *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {done.stderr[-800:]}")


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path


def _write_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _lab_name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sentinel Lab"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


@dataclass
class Pki:
    """A root CA (RSA-2048, SHA-256) and leaves it signs, in `folder`. SHA-1 leaves are signed by the
    openssl CLI: `cryptography` no longer signs with SHA-1."""

    openssl: str
    folder: Path
    ca_cert: Path = field(init=False)
    ca_key: Path = field(init=False)

    def __post_init__(self) -> None:
        self.ca_cert, self.ca_key = self.folder / "ca.crt", self.folder / "ca.key"
        self._key = rsa.generate_private_key(65537, 2048)
        now = datetime.now(UTC)
        self._ca = (
            x509.CertificateBuilder()
            .subject_name(_lab_name("Sentinel Lab Root"))
            .issuer_name(_lab_name("Sentinel Lab Root"))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=30))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.ca_cert.write_bytes(self._ca.public_bytes(serialization.Encoding.PEM))
        _write_key(self.ca_key, self._key)

    def leaf(
        self,
        stem: str,
        *,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (HOST,),
        key: str = "rsa2048",
        digest: str = "sha256",
        days: int = 90,
        expired: bool = False,
        self_signed: bool = False,
    ) -> Leaf:
        """A server certificate; `key` rsaNNNN or ec256/ec384; `expired`: it ended two days ago."""
        cert_path, key_path = self.folder / f"{stem}.crt", self.folder / f"{stem}.key"
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
        if key.startswith("rsa"):
            private = rsa.generate_private_key(65537, int(key[3:]))
        else:
            private = ec.generate_private_key(ec.SECP384R1() if key == "ec384" else ec.SECP256R1())
        _write_key(key_path, private)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if digest == "sha1":
            return self._openssl_sha1(stem, key_path, cert_path, sans, days)
        now = datetime.now(UTC)
        start, end = (
            (now - timedelta(days=days + 2), now - timedelta(days=2))
            if expired
            else (now - timedelta(days=1), now + timedelta(days=days))
        )
        name = _lab_name(f"{stem}.lab.test")
        signer_key = private if self_signed else self._key
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name if self_signed else self._ca.subject)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
            .sign(signer_key, hashes.SHA384() if digest == "sha384" else hashes.SHA256())
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return Leaf(cert_path, key_path)

    def _openssl_sha1(self, stem: str, key: Path, cert: Path, sans: list[x509.GeneralName], days: int) -> Leaf:
        csr, ext = self.folder / f"{stem}.csr", self.folder / f"{stem}.ext"
        names = ",".join(f"DNS:{n.value}" if isinstance(n, x509.DNSName) else f"IP:{n.value}" for n in sans)
        ext.write_text(f"basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName={names}\n")
        subj = f"/O=Sentinel Lab/CN={stem}.lab.test"
        openssl_run(self.openssl, "req", "-new", "-key", str(key), "-out", str(csr), "-subj", subj)
        openssl_run(
            self.openssl, "x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
            "-CAcreateserial", "-sha1", "-days", str(days), "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        return Leaf(cert, key)


# -- servers ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None, log: Path | None, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise RuntimeError(f"server on {port} exited: {tail}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not listen within {limit} s")


class Lab:
    """Starts servers and stops every one of them on close (also after a failed start)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()

    def _spawn(self, name: str, cmd: list[str], port: int) -> int:
        log = self.folder / f"{name}.log"  # a file, not a pipe: a full pipe would stall the server
        with log.open("wb") as sink:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
        self.procs.append(proc)
        wait_listening(port, proc, log)
        return port

    def s_server(self, name: str, openssl: str, leaf: Leaf, *extra: str) -> int:
        port = free_port()
        cmd = [openssl, "s_server", "-accept", f"{HOST}:{port}", "-cert", str(leaf.cert), "-key", str(leaf.key),
               "-quiet", *extra]  # fmt: skip
        return self._spawn(name, cmd, port)

    def nginx(self, name: str, nginx: str, leaf: Leaf, protocols: str = "TLSv1.2 TLSv1.3") -> int:
        """nginx as a plain foreground process with its own prefix and config (no system service)."""
        port = free_port()
        prefix = self.folder / f"nginx-{name}"
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(
            textwrap.dedent(f"""\
            daemon off;
            master_process off;
            worker_processes 1;
            pid {prefix}/nginx.pid;
            error_log {prefix}/error.log warn;
            events {{ worker_connections 64; }}
            http {{
                access_log off;
                client_body_temp_path {prefix}/body;
                proxy_temp_path {prefix}/proxy;
                fastcgi_temp_path {prefix}/fastcgi;
                uwsgi_temp_path {prefix}/uwsgi;
                scgi_temp_path {prefix}/scgi;
                server {{
                    listen {HOST}:{port} ssl;
                    ssl_certificate {leaf.cert};
                    ssl_certificate_key {leaf.key};
                    ssl_protocols {protocols};
                    ssl_ciphers ALL:@SECLEVEL=0;
                    location / {{ return 200 "lab\\n"; }}
                }}
            }}
            """)
        )
        return self._spawn(name, [nginx, "-p", str(prefix), "-c", str(conf)], port)

    def tlslite(self, name: str, leaf: Leaf, versions: str = "3.1-3.4", ciphers: str = "") -> int:
        """tlslite-ng (pure Python TLS) in a child interpreter; `versions` like "3.0-3.1" (SSLv3..TLS1.0)."""
        port = free_port()
        script = self.folder / f"tlslite_{name}.py"
        script.write_text(_TLSLITE_SERVER)
        cmd = [sys.executable, str(script), HOST, str(port), str(leaf.cert), str(leaf.key), versions, ciphers]
        return self._spawn(name, cmd, port)

    def python_reads_first(self, leaf: Leaf) -> int:
        """A Python `ssl` server that reads the request before it replies (then answers and closes):
        the reply lands after the client's close_notify, which used to lose the certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(leaf.cert, leaf.key)
        listener = socket.create_server((HOST, 0))
        listener.settimeout(0.2)
        self.sockets.append(listener)
        stop = self._stop

        def one(conn: socket.socket) -> None:
            with contextlib.suppress(OSError), conn:
                conn.settimeout(3)
                tls = ctx.wrap_socket(conn, server_side=True)
                with contextlib.suppress(OSError):
                    tls.recv(4096)
                tls.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                threading.Thread(target=one, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    def close(self) -> None:
        self._stop.set()
        for sock in self.sockets:
            sock.close()
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


_TLSLITE_SERVER = """
import socket, sys, threading
from tlslite.api import HandshakeSettings, TLSConnection, X509CertChain, parsePEMKey

host, port, cert, key, versions, ciphers = sys.argv[1:7]
chain = X509CertChain()
chain.parsePemList(open(cert).read())
private = parsePEMKey(open(key).read(), private=True)
settings = HandshakeSettings()
low, high = versions.split("-")
settings.minVersion = tuple(int(x) for x in low.split("."))
settings.maxVersion = tuple(int(x) for x in high.split("."))
if ciphers:
    settings.cipherNames = ciphers.split(",")
    settings.macNames = ["sha", "md5", "sha256", "sha384", "aead"]
listener = socket.create_server((host, int(port)))

def one(conn):
    conn.settimeout(5)
    tls = TLSConnection(conn)
    try:
        tls.handshakeServer(certChain=chain, privateKey=private, settings=settings)
        tls.read(max=4096)
        tls.close()
    except Exception:  # a prober that hangs up mid-handshake is what this lab server expects
        return
    finally:
        conn.close()

while True:
    conn, _ = listener.accept()
    threading.Thread(target=one, args=(conn,), daemon=True).start()
"""


# -- the probes ------------------------------------------------------------------------------
def probe_once(kind: str, port: int, ca_file: Path | None, tls_timeout: float = 3.0) -> Observation:
    """One `tls` or `tls_scan` job against HOST:port through a fresh ScopedNetwork."""
    tls = {"ca_file": ca_file}
    settings = CollectorSettings(
        per_target_rate=500, per_target_burst=100, tls=tls, tls_scan=tls, tls_timeout=tls_timeout
    )
    probe = TlsProbe(settings) if kind == "tls" else TlsScanProbe(settings)
    job = ProbeJob(probe.name, "sys-lab", HOST, f"{HOST}:{port}", ports=(port,))

    async def go() -> Observation:
        net = ScopedNetwork(SCOPE, settings)
        try:
            [obs] = await probe.run(job, net)
            return obs
        finally:
            await net.close()

    return asyncio.run(go())
