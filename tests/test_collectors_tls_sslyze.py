"""Sentinel's TLS probes against sslyze on the same real lab servers: versions offered, weak suites
and certificate verdicts must agree; a regression against the peer fails here.

sslyze pins its own `cryptography` and `nassl` (a legacy OpenSSL that still speaks SSLv3, RC4, ...),
older than Sentinel's, so it runs from its own virtualenv as the `sslyze` command (see .ci/setup).
Lab (all on 127.0.0.1, what the local OpenSSL and tlslite-ng can actually serve):
  legacy    s_server TLS 1.0-1.2, NULL + anonymous + CBC suites, SHA-1-signed leaf from the lab CA
  modern    s_server TLS 1.2-1.3, SHA-256 leaf from the lab CA
  expired   nginx TLS 1.2-1.3, leaf from the lab CA that expired two days ago
  mismatch  s_server, self-signed EC leaf naming another host
  tls10     s_server TLS 1.0 only (CBC suites with TLS 1.0), good leaf
  sslv3     tlslite-ng SSLv3 only with RC4 and 3DES, good leaf
"""

from __future__ import annotations

import base64
import importlib.util
import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sentinel.collectors.tlswire import SUITES
from sentinel.models import Observation, ObservationStatus
from tests.netns import require, require_tool
from tests.tls_lab import HOST, Lab, Pki, probe_once

SSLYZE_VERSIONS = {
    "ssl_3_0_cipher_suites": "SSLv3",
    "tls_1_0_cipher_suites": "TLSv1",
    "tls_1_1_cipher_suites": "TLSv1.1",
    "tls_1_2_cipher_suites": "TLSv1.2",
    "tls_1_3_cipher_suites": "TLSv1.3",
}
LEGACY_SUITES = "AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256:AECDH-AES128-SHA:NULL-SHA:@SECLEVEL=0"


@dataclass
class Target:
    port: int
    tls: Observation
    scan: Observation
    peer: dict[str, Any]  # sslyze's scan_result for this server


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    openssl, nginx, sslyze = require_tool("openssl"), require_tool("nginx"), require_tool("sslyze")
    require(importlib.util.find_spec("tlslite") is not None, "needs tlslite-ng (pip install tlslite-ng)")
    folder = tmp_path_factory.mktemp("tls_peers")
    pki = Pki(openssl, folder)
    servers = Lab(folder)
    try:
        good = pki.leaf("good")
        ports = {
            "legacy": servers.s_server("legacy", openssl, pki.leaf("sha1", digest="sha1"), "-no_tls1_3",
                                       "-serverpref", "-cipher", LEGACY_SUITES),
            "modern": servers.s_server("modern", openssl, good, "-no_tls1", "-no_tls1_1"),
            "expired": servers.nginx("expired", nginx, pki.leaf("expired", expired=True)),
            "mismatch": servers.s_server("mismatch", openssl, pki.leaf("mismatch", key="ec256", dns=("other.example",),
                                                                        ips=(), self_signed=True)),
            "tls10": servers.s_server("tls10", openssl, good, "-tls1", "-cipher", "ALL:@SECLEVEL=0"),
            "sslv3": servers.tlslite("sslv3", good, "3.0-3.0", "rc4,3des"),
        }  # fmt: skip
        with ThreadPoolExecutor(2) as pool:  # Sentinel and the peer side by side: the lab is small
            peer_job = pool.submit(_sslyze, sslyze, pki.ca_cert, folder / "sslyze.json", list(ports.values()))
            ours = {
                name: (probe_once("tls", port, pki.ca_cert), probe_once("tls_scan", port, pki.ca_cert))
                for name, port in ports.items()
            }
            peer = peer_job.result()
        yield {name: Target(port, *ours[name], peer[port]) for name, port in ports.items()}
    finally:
        servers.close()


def _sslyze(tool: str, ca_file: Path, out: Path, ports: list[int]) -> dict[int, dict[str, Any]]:
    done = subprocess.run(
        [tool, "--sslv3", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3", "--certinfo",
         "--certinfo_ca_file", str(ca_file), "--json_out", str(out), "--quiet", *(f"{HOST}:{p}" for p in ports)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    require(out.exists(), f"sslyze wrote no JSON: {done.stderr[-500:]}")
    results: dict[int, dict[str, Any]] = {}
    for server in json.loads(out.read_text())["server_scan_results"]:
        assert server["scan_status"] == "COMPLETED", server.get("connectivity_error_trace")
        results[server["server_location"]["port"]] = server["scan_result"]
    assert sorted(results) == sorted(ports)
    return results


def _accepted(peer: dict[str, Any], key: str) -> list[str]:
    attempt = peer[key]
    assert attempt["status"] == "COMPLETED", attempt.get("error_trace")
    return [c["cipher_suite"]["name"] for c in attempt["result"]["accepted_cipher_suites"]]


def _deployment(peer: dict[str, Any]) -> dict[str, Any]:
    info = peer["certificate_info"]
    assert info["status"] == "COMPLETED", info.get("error_trace")
    return dict(info["result"]["certificate_deployments"][0])


def _supplied_ca_validation(peer: dict[str, Any]) -> dict[str, Any]:
    results = _deployment(peer)["path_validation_results"]
    return next(r for r in results if r["trust_store"]["name"] == "Supplied CA file")


NAMES = ("legacy", "modern", "expired", "mismatch", "tls10", "sslv3")


@pytest.mark.parametrize("name", NAMES)
def test_versions_offered_agree(lab: dict[str, Target], name: str) -> None:
    target = lab[name]
    theirs = [label for key, label in SSLYZE_VERSIONS.items() if _accepted(target.peer, key)]
    assert target.scan.status == ObservationStatus.OK
    assert target.scan.data["tls.versions_offered"] == theirs


@pytest.mark.parametrize("name", NAMES)
def test_weak_suites_agree(lab: dict[str, Target], name: str) -> None:
    data = lab[name].scan.data
    accepted = {s for key in SSLYZE_VERSIONS if key != "tls_1_3_cipher_suites" for s in _accepted(lab[name].peer, key)}
    weak_theirs = {s.name for s in SUITES.values() if s.weak and s.name in accepted}
    families_theirs = sorted({f.value for s in SUITES.values() if s.name in weak_theirs for f in s.families})
    assert data["tls.weak_families"] == families_theirs
    ours = set(data["tls.weak_suites"])
    assert ours <= weak_theirs
    truncated = set(data["tls.weak_families_truncated"])
    complete = {
        s.name for s in SUITES.values() if s.name in weak_theirs and not {f.value for f in s.families} & truncated
    }
    assert complete <= ours  # every weak suite of a family Sentinel swept to the end


def test_the_lab_covers_the_weak_families_the_builds_can_serve(lab: dict[str, Target]) -> None:
    assert lab["legacy"].scan.data["tls.weak_families"] == ["anon", "null"]
    assert lab["sslv3"].scan.data["tls.weak_families"] == ["3des", "rc4"]
    cbc_tls10 = [s for s in _accepted(lab["tls10"].peer, "tls_1_0_cipher_suites") if "_CBC_" in s]
    assert cbc_tls10 and lab["tls10"].scan.data["tls.offers_tls1_0"] is True  # CBC with TLS 1.0 is flagged there


@pytest.mark.parametrize("name", [n for n in NAMES if n != "sslv3"])  # Python's ssl cannot speak SSLv3 any more
def test_certificate_verdicts_agree(lab: dict[str, Target], name: str) -> None:
    target = lab[name]
    deployment = _deployment(target.peer)
    leaf = deployment["received_certificate_chain"][0]
    validation = _supplied_ca_validation(target.peer)
    error = validation["validation_error"] or ""
    for obs in (target.tls, target.scan):
        data = obs.data
        assert obs.status == ObservationStatus.OK, obs.error
        their_after = datetime.fromisoformat(leaf["not_valid_after"].replace("Z", "+00:00")).astimezone(UTC)
        assert datetime.fromisoformat(data["cert.not_after"]) == their_after
        assert (data["cert.days_to_expiry"] < 0) == (their_after < datetime.now(UTC))
        assert data["cert.sha256"] == base64.b64decode(leaf["fingerprint_sha256"]).hex()
        assert data["cert.signature_sha1"] == (leaf["signature_hash_algorithm"]["name"] == "sha1")
        assert data["cert.hostname_match"] == ("no matching subjectAltName" not in error)
        # sslyze validates the name too: trusted there means trusted chain and matching name here
        trusted = data["chain.trusted"]
        assert validation["was_validation_successful"] == bool(trusted and data["cert.hostname_match"])
        if "not valid at validation time" in error:
            assert "expired" in (data["chain.trust_error"] or "")
        if "Forbidden signature algorithm" in error:
            assert trusted is False and "sha1" in (data["chain.trust_error"] or "")


def test_the_verdicts_themselves(lab: dict[str, Target]) -> None:
    """What the lab was built to show, so an agreement on nothing cannot pass."""
    trusted = {name: lab[name].tls.data["chain.valid"] for name in NAMES if name != "sslv3"}
    assert trusted == {"legacy": False, "modern": True, "expired": False, "mismatch": False, "tls10": True}
    assert lab["legacy"].tls.data["cert.signature_sha1"] is True
    assert lab["expired"].tls.data["cert.days_to_expiry"] < 0
    assert (lab["mismatch"].tls.data["cert.self_signed"], lab["mismatch"].tls.data["cert.hostname_match"]) == (
        True,
        False,
    )
    assert lab["sslv3"].scan.data["chain.trusted"] is True
    assert lab["sslv3"].tls.status == ObservationStatus.ERROR  # an SSLv3-only server refuses every modern client
    assert lab["sslv3"].tls.data["error_kind"] == "protocol"
