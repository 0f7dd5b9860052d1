"""`sentinel pcap analyze` and `sentinel sniff` end to end, plus the small pure pieces they rely on."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.pcapgen import PcapWriter, dns_query, tcp
from sentinel.cli.pcap_cmd import pcap, sniff
from sentinel.collectors.protocols.dnsmsg import parse_question
from sentinel.errors import InputError
from sentinel.models import Finding
from sentinel.registry.models import Registry
from sentinel.registry.scope import Scope
from sentinel.traffic.analyze import observations_from_pcap, with_unregistered
from sentinel.traffic.detectors.dns import base_domain, entropy
from sentinel.traffic.intel import ThreatIntel, load_intel
from sentinel.traffic.isolate import analyze_isolated
from sentinel.traffic.pii import classify, valid_resident_id
from tests.netns import require_root

FIXTURES = Path(__file__).resolve().parents[1] / "rules" / "tests" / "traffic"
REGISTRY = """
scope:
  allow: ["198.18.0.0/16"]
systems:
  - id: portal
    name: Lab portal
    owner: {department: Lab}
    tier: city
    mlps_level: 3
    endpoints:
      - host: 198.18.61.10
        ports: [21, 23, 8080]
"""
# the keys of Finding.to_dict(), as `scan` prints: the fields, plus when it was last confirmed
FINDING_KEYS = {f.name for f in dataclasses.fields(Finding)} | {"last_confirmed"}


def invoke(args: list[str]) -> tuple[int, str, str]:
    runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()
    result = runner.invoke(pcap, args, standalone_mode=False, catch_exceptions=False)
    return int(result.return_value or 0), result.stdout, result.stderr


def test_analyze_json_has_the_scan_shape_and_names_both_ends(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY)
    files = [str(FIXTURES / n) for n in ("portscan_syn.pcap", "ftp_bruteforce.pcap", "syn_flood.pcap.gz")]
    code, out, _ = invoke(
        ["analyze", *files, "--registry", str(registry), "--store", str(tmp_path / "s.db"), "--format", "json"]
    )
    assert code == 0
    findings = json.loads(out)
    assert {f["rule_id"] for f in findings} >= {
        "traffic_portscan_vertical",
        "traffic_cleartext_credentials",
        "traffic_bruteforce_login",
        "traffic_syn_flood",
    }
    for f in findings:
        assert set(f) == FINDING_KEYS
        assert f["category"] in ("threat", "compliance")
        assert f["system_id"] == "portal"
        assert "source_ip" in f["evidence"] and "destination_ip" in f["evidence"]
    creds = next(f for f in findings if f["rule_id"] == "traffic_cleartext_credentials")
    assert creds["evidence"]["credentials.secret"] == "[redacted]" and "s3cret" not in out


def test_without_a_registry_detections_are_reported_as_unregistered(tmp_path: Path) -> None:
    code, out, _ = invoke(
        ["analyze", str(FIXTURES / "portscan_syn.pcap"), "--store", str(tmp_path / "s.db"), "--format", "json"]
    )
    assert code == 0
    scan = next(f for f in json.loads(out) if f["rule_id"] == "traffic_portscan_vertical")
    assert scan["system_id"] == "unregistered" and scan["target"] == "198.18.61.30 -> 198.18.61.10"


def test_a_bad_file_is_named_and_the_rest_of_the_batch_goes_on(tmp_path: Path) -> None:
    bad = tmp_path / "notes.pcap"
    bad.write_text("not a capture")
    args = ["analyze", str(bad), str(tmp_path / "missing.pcap"), str(FIXTURES / "portscan_syn.pcap")]
    code, out, err = invoke([*args, "--store", str(tmp_path / "s.db")])
    assert code == 2
    assert f"{bad}: not a pcap or pcapng file" in err
    assert "missing.pcap: no such file" in err
    assert "1 of 3 captures analysed" in out and "Port scan of one host" in out


STARVED = """
import sys
from pathlib import Path
from sentinel.registry.models import Registry
from sentinel.registry.scope import Scope
from sentinel.traffic.intel import ThreatIntel
from sentinel.traffic.isolate import analyze_isolated
outcome = analyze_isolated(Path(sys.argv[1]), Registry(scope=Scope(), systems=()), ThreatIntel(), 120, 1)
print(outcome.error)
"""


def test_time_and_memory_limits_stop_one_file(tmp_path: Path) -> None:
    empty = Registry(scope=Scope(), systems=())
    path = tmp_path / "big.pcap"
    with PcapWriter(path) as w:
        for i in range(20_000):
            w.write(1_700_000_000 + i / 1000, tcp("10.0.0.9", "10.0.0.5", 40000 + i % 20000, i % 60000 + 1, 0x02))
    slow = analyze_isolated(path, empty, ThreatIntel(), time_limit=0.001, memory_mb=1024)
    assert slow.error is not None and "time limit" in slow.error
    # The memory limit caps what the analysis may add to what the child inherited, so the capture must make
    # the detectors' tables grow for real: many distinct sources scanning many distinct hosts.
    wide = tmp_path / "wide.pcap"
    with PcapWriter(wide) as w:
        for i in range(120_000):
            src = f"10.{(i >> 8) & 255}.{i & 255}.{(i >> 16) + 1}"
            w.write(
                1_700_000_000 + i / 1000, tcp(src, f"172.16.{i & 255}.{(i >> 8) & 255}", 40000, i % 60000 + 1, 0x02)
            )
    # From a fresh interpreter, as `sentinel pcap analyze` runs: a child forked from this long-lived test process
    # inherits its heap, whose free space the analysis could reuse without growing (heap state of earlier tests).
    starved = subprocess.run(
        [sys.executable, "-c", STARVED, str(wide)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "memory" in starved, starved
    fine = analyze_isolated(path, empty, ThreatIntel(), time_limit=60, memory_mb=1024)
    assert fine.error is None and fine.packets == 20_000


def test_reserved_system_id_and_rule_runner_entry_point(tmp_path: Path) -> None:
    registry = Registry(scope=Scope(), systems=())
    assert with_unregistered(registry).system("unregistered") is not None
    with pytest.raises(InputError, match="reserved"):
        with_unregistered(with_unregistered(registry))
    with pytest.raises(InputError, match="not a pcap"):
        observations_from_pcap(Path(__file__), registry)


def test_threat_intel_lists_and_their_errors(tmp_path: Path) -> None:
    good = tmp_path / "feed.txt"
    good.write_text("# comment\n203.0.113.5\n198.51.100.0/24  # a range\nfd00:bad::1\nEvil.Example\n")
    intel = load_intel([tmp_path])
    assert intel.addresses == {"203.0.113.5": "feed", "fd00:bad::1": "feed"}
    assert intel.domain_list("x.y.evil.example") == ("evil.example", "feed")
    assert intel.domain_list("notevil.example") is None
    (tmp_path / "broken.txt").write_text("ok.example\nnot an entry!\n")
    with pytest.raises(InputError) as exc:
        load_intel([tmp_path])
    assert str(exc.value.problems[0]).startswith(f"{tmp_path / 'broken.txt'}:2:")


def test_personal_data_and_dns_helpers() -> None:
    assert valid_resident_id("11010519491231002X")
    assert not valid_resident_id("110105194912310021")  # wrong check character
    assert not valid_resident_id("110105194913310026")  # month 13
    assert classify(b"13800138000") == ("mobile", "138******00")
    assert classify(b"12345678901") is None
    assert classify(b"11010519491231002X") == ("id", "1101************2X")
    assert parse_question(dns_query("a.b.example.com", 16)) == ("a.b.example.com", 16)
    assert parse_question(b"\x00" * 5) is None
    assert base_domain(["x", "portal", "gov", "cn"]) == "portal.gov.cn"
    assert entropy("aaaa") == 0.0 and entropy("abcd") == 2.0


def test_sniff_on_loopback_sees_a_port_scan(tmp_path: Path) -> None:
    require_root()

    def knock() -> None:
        time.sleep(1.5)  # scapy needs a moment to open its socket
        for port in range(20100, 20250):  # closed loopback ports: each SYN gets a RST
            with socket.socket() as s:
                s.settimeout(0.2)
                s.connect_ex(("127.0.0.1", port))
            time.sleep(0.003)  # paced, so the capture socket keeps up

    thread = threading.Thread(target=knock)
    thread.start()
    runner = CliRunner()
    result = runner.invoke(
        sniff,
        [
            "--iface",
            "lo",
            "--bpf",
            "tcp and portrange 20100-20249",
            "--duration",
            "2.5",
            "--format",
            "json",
            "--store",
            str(tmp_path / "s.db"),
        ],
        standalone_mode=False,
        catch_exceptions=False,
    )
    thread.join()
    findings = json.loads(result.stdout if hasattr(result, "stdout") else result.output)
    scan = next(f for f in findings if f["rule_id"] == "traffic_portscan_vertical")
    assert scan["target"] == "127.0.0.1 -> 127.0.0.1" and scan["system_id"] == "unregistered"


START_UP = """
import sys
import sentinel.cli.main, sentinel.cli.pcap_cmd
heavy = ("sentinel.app", "sentinel.engine.ruleset", "sentinel.store", "sentinel.config.settings", "rich")
print(sorted(name for name in heavy if name in sys.modules))
"""


def test_the_front_end_imports_no_composition_root_settings_or_rendering() -> None:
    """`sentinel pcap analyze` starts a capture's child before it needs the rules, the store, the settings or
    rich: the front end and the pcap commands leave them to be imported when used."""
    out = subprocess.run([sys.executable, "-c", START_UP], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_a_registry_named_only_in_the_settings_file_is_the_one_used(tmp_path: Path) -> None:
    (tmp_path / "registry.yaml").write_text(REGISTRY)
    (tmp_path / "sentinel.yaml").write_text("registry: registry.yaml\n")  # relative to the settings file
    args = ["analyze", str(FIXTURES / "ftp_bruteforce.pcap"), "--config", str(tmp_path / "sentinel.yaml")]
    code, out, _ = invoke([*args, "--store", str(tmp_path / "s.db"), "--format", "json"])
    assert code == 0
    findings = json.loads(out)
    assert findings and {f["system_id"] for f in findings} == {"portal"}
