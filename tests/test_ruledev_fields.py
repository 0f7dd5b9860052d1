"""`sentinel rules lint` checks every field a rule reads against the fields the producers of its kinds declare
(issue 15); and the declarations are true: the probes run against real loopback servers, the traffic detectors
over the shipped captures, and every data field each observation carries must be declared for its kind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import dns.message
import dns.rrset
import pytest
import yaml

from sentinel.cli.main import main
from sentinel.collectors import BUILTIN_PROBES, build_probes
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import plan_sweep, run_sweep_jobs
from sentinel.config.settings import CollectorSettings
from sentinel.demo.estate import DemoEstate
from sentinel.errors import Problem
from sentinel.models import Observation, ObservationStatus
from sentinel.paths import shipped_rules_dir
from sentinel.registry.loader import load_registry
from sentinel.ruledev.kinds import ATTRIBUTE_FIELDS, declared_fields, observation_kinds, traffic_producers
from sentinel.ruledev.lint import lint
from sentinel.traffic.analyze import Analyzer, analyze_file
from sentinel.traffic.capture import CaptureReader
from sentinel.traffic.intel import load_intel, shipped_intel_dir
from sentinel.traffic.sniff import LiveCapture, SniffResult, capture_observation
from tests.netns import require
from tests.support.estate import demo_collectors

RULE = """\
id: {rid}
title: A rule that reads fields
severity: low
category: configuration
observation: {observation}
{body}remediation: Nothing to do.
"""
CAPTURES = Path(__file__).resolve().parents[1] / "rules" / "tests" / "traffic"


def _field_problems(tmp_path: Path, observation: str, body: str) -> tuple[Path, list[Problem]]:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    path = folder / "reads_fields.yaml"
    path.write_text(RULE.format(rid="reads_fields", observation=observation, body=body), encoding="utf-8")
    return path, [p for p in lint([folder]).problems if "reads field" in p.message]


# -- lint ------------------------------------------------------------------------------------------------------
def test_a_field_no_probe_reports_is_a_problem_at_its_line(tmp_path: Path) -> None:
    path, problems = _field_problems(
        tmp_path,
        "http",
        "when: {field: reachabel, op: eq, value: true}\n"  # 6
        "condition:\n"
        "  any:\n"
        "    - {field: http.no_such_field, op: eq, value: true}\n"  # 9
        "    - {field: status_code, op: ge, value: 500}\n",
    )
    assert [(p.file, p.line) for p in problems] == [(str(path), 6), (str(path), 9)]
    assert problems[0].message == (
        "rule reads_fields reads field 'reachabel', which no probe or traffic detector reports for kind 'http' "
        "(did you mean 'reachable'?)"
    )
    assert "reads field 'http.no_such_field', which no probe or traffic detector reports for kind 'http'" in (
        problems[1].message
    )


def test_the_cli_exits_2_naming_the_file_line_rule_field_and_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _field_problems(tmp_path, "http", "condition: {field: http.no_such_field, op: eq, value: true}\n")
    assert main(["rules", "lint", str(path.parent)]) == 2
    assert (
        f"{path}:6: rule reads_fields reads field 'http.no_such_field', which no probe or traffic detector reports "
        "for kind 'http'"
    ) in capsys.readouterr().err


def test_attributes_and_the_rules_own_memory_are_fields_every_rule_may_read(tmp_path: Path) -> None:
    _, problems = _field_problems(
        tmp_path,
        "tls",
        "change: {field: cert.sha256, keep: [cert.not_after]}\n"
        "condition:\n"
        "  all:\n"
        "    - {field: status, op: eq, value: ok}\n"
        "    - {field: target, op: contains, value: '443'}\n"
        "    - {field: probe, op: eq, value: tls}\n"
        "    - {field: change.changed, op: eq, value: true}\n"
        "    - {field: change.before.cert.not_after, op: exists}\n",
    )
    assert problems == []
    # without `change:`, nothing writes `change.*`: the rule could never tell
    _, problems = _field_problems(tmp_path, "tls", "condition: {field: change.changed, op: eq, value: true}\n")
    assert [(p.line, p.message.split(" (")[-1]) for p in problems] == [
        (6, "'change.*' fields come from the rule's own 'change:')")
    ]


def test_value_field_memory_fields_and_evidence_are_checked_too(tmp_path: Path) -> None:
    _, problems = _field_problems(
        tmp_path,
        "\n  - port\n  - host",  # 5-7: either kind's fields will do
        "change: {field: open_ports, keep: [open_portz]}\n"  # 8
        "condition:\n"
        "  any:\n"
        "    - {field: state, op: eq, value_field: reachable_frm}\n"  # 11
        "    - {field: change.added, op: exists}\n"
        "evidence: [declared, high_risk, rtt]\n",  # 13
    )
    assert [(p.line, p.message.split("'")[1]) for p in problems] == [
        (8, "open_portz"),
        (11, "reachable_frm"),
        (13, "rtt"),
    ]
    assert "for kinds 'port', 'host' (did you mean 'reachable_from'?)" in problems[1].message


def test_every_shipped_rule_reads_only_declared_fields() -> None:
    report = lint([shipped_rules_dir()])
    assert len(report.rules) >= 74
    assert not [str(p) for p in report.problems if "reads field" in p.message]


def test_every_kind_a_producer_makes_has_a_declaration() -> None:
    declared = declared_fields()
    assert observation_kinds() <= set(declared), sorted(observation_kinds() - set(declared))
    assert {cls.__name__ for cls in traffic_producers()} >= {"ScanDetector", "PayloadDetector", "LiveCapture"}


def test_attribute_fields_are_what_observation_get_serves() -> None:
    obs = Observation(
        kind="k",
        system_id="s",
        target="t",
        observed_at=datetime.now(UTC),
        probe="p",
        status=ObservationStatus.ERROR,
        error="e",
        data={name: "from data" for name in ATTRIBUTE_FIELDS},
    )
    served = {name: obs.get(name) for name in ATTRIBUTE_FIELDS}
    assert {"status", "error", "kind", "target", "probe", "system_id"} <= ATTRIBUTE_FIELDS
    assert "from data" not in served.values(), served


# -- the declarations hold ---------------------------------------------------------------------------------------
def _undeclared(observations: list[Observation]) -> dict[str, list[str]]:
    """(probe kind) -> the data fields observations carried that their probe does not declare for that kind."""
    out: dict[str, set[str]] = {}
    for o in observations:
        declared = BUILTIN_PROBES[o.probe].reported_fields().get(o.kind)
        missing = set(o.data) - (declared or set()) if declared is not None else {"<kind not declared>"}
        if missing:
            out.setdefault(f"{o.probe} {o.kind}", set()).update(missing)
    return {k: sorted(v) for k, v in out.items()}


async def _sweep(registry_doc: Mapping[str, Any], folder: Path, collectors: Mapping[str, Any]) -> list[Observation]:
    path = folder / "registry.yaml"
    path.write_text(yaml.safe_dump(registry_doc, allow_unicode=True), encoding="utf-8")
    registry = load_registry(path)
    settings = CollectorSettings.model_validate(collectors)
    net = ScopedNetwork(registry.scope, settings)
    try:
        return await run_sweep_jobs(plan_sweep(registry, build_probes(settings)), net, 32, 30)
    finally:
        await net.close()


def test_probe_declarations_hold_on_the_demo_estate(tmp_path: Path) -> None:
    """Every built-in probe over the demo estate's real servers (TLS good and expired, plain HTTP, a redirect, SSH,
    a silent database port, a host that is down), plus a name that does not resolve and whose resolvers are
    outside the scope (the runner's error observations)."""

    async def run() -> list[Observation]:
        async with DemoEstate(tmp_path, net="127.82.0") as estate:
            doc = yaml.safe_load(estate.registry_yaml())
            doc["scope"]["allow"].append("lab.invalid")
            doc["systems"].append(
                {
                    "id": "nameless",
                    "name": "a name that does not resolve",
                    "owner": {"department": "ops"},
                    "tier": "district",
                    "mlps_level": 2,
                    "endpoints": [{"url": "https://www.lab.invalid/"}],
                }
            )
            collectors = {
                **demo_collectors(estate, per_target_rate=500, per_target_burst=200),
                "probes": list(BUILTIN_PROBES),
                "port_discovery": {"ports": list(range(1, 41))},
            }
            return await _sweep(doc, tmp_path, collectors)

    observations = asyncio.run(run())
    assert {o.probe for o in observations if o.status == ObservationStatus.OK} >= set(BUILTIN_PROBES) - {"dns"}
    assert {o.data.get("error_kind") for o in observations} >= {"out_of_scope", "connect"}
    assert _undeclared(observations) == {}


# -- service greetings and DNS, from stand-ins on loopback ----------------------------------------------------------
LAB = "127.82.1.10"
RESOLVERS = ("127.82.1.53", "127.82.1.54")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _talker(greeting: bytes, replies: dict[bytes, bytes]) -> Handler:
    """Says `greeting`, then answers each line that starts with a key of `replies` (case-insensitive)."""

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):  # the probe hangs up when it has read enough
            if greeting:
                writer.write(greeting)
                await writer.drain()
            while line := await reader.readline():
                answer = next((a for k, a in replies.items() if line.upper().startswith(k)), None)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        writer.close()

    return talk


def _http(body: bytes, headers: str = "") -> Handler:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{headers}Content-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        writer.close()

    return serve


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):  # accepts and never speaks, until the probe gives up and hangs up
        await reader.read()
    writer.close()


REDIS_INFO = b"redis_version:6.0.5\r\nredis_mode:standalone\r\nos:Linux 5.10\r\n"
SERVICES: dict[int, Handler] = {
    21: _talker(
        b"220 ProFTPD 1.3.5 Server ready.\r\n", {b"USER": b"331 Password required\r\n", b"PASS": b"230 OK\r\n"}
    ),
    23: _talker(b"\x17\x03\x01 not a greeting of any protocol \x00\x01\r\n", {}),
    25: _talker(b"220 mail.lab.example ESMTP Postfix\r\n", {b"QUIT": b"221 Bye\r\n"}),
    110: _talker(b"+OK Dovecot ready.\r\n", {b"QUIT": b"+OK\r\n"}),
    143: _talker(b"* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n", {b"A1": b"* BYE\r\n"}),
    587: _silent,
    2222: _talker(b"SSH-2.0-OpenSSH_7.4\r\n", {}),
    2323: _talker(b"\xff\xfd\x18\xff\xfb\x01", {}),  # Telnet: DO TERMINAL-TYPE, WILL ECHO, then nothing
    2375: _http(
        json.dumps({"Version": "20.10.7", "ApiVersion": "1.41", "Os": "linux", "KernelVersion": "5.10"}).encode()
    ),
    6379: _talker(b"", {b"PING": b"+PONG\r\n", b"INFO": b"$%d\r\n%s\r\n" % (len(REDIS_INFO), REDIS_INFO)}),
    8080: _http(b"{}", "Server: Apache/2.4.49 (Unix)\r\nX-Powered-By: PHP/5.6.40\r\n"),
    9200: _http(json.dumps({"name": "n1", "cluster_name": "logs", "version": {"number": "7.10.0"}}).encode()),
    11211: _talker(
        b"", {b"VERSION": b"VERSION 1.6.9\r\n", b"STATS": b"STAT uptime 5\r\nSTAT curr_connections 2\r\nEND\r\n"}
    ),
}


class _Resolver(asyncio.DatagramProtocol):
    """A DNS stand-in: each resolver gives its own address for the name (so they disagree), CAA, SPF and DMARC."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        answer = dns.message.make_response(query)
        question = query.question[0]
        name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        records = {
            ("mail.lab.example.", "A"): [LAB if self.address == RESOLVERS[0] else "10.9.9.9"],
            ("mail.lab.example.", "AAAA"): ["fd00:5e17::10"],
            ("lab.example.", "CAA"): ['0 issue "ca.example"'],
            ("lab.example.", "TXT"): ['"v=spf1 mx -all"'],
            ("_dmarc.lab.example.", "TXT"): ['"v=DMARC1; p=reject"'],
        }.get((name, rdtype), [])
        if records:
            answer.answer.append(dns.rrset.from_text(name, 300, "IN", rdtype, *records))
        assert self.transport is not None
        self.transport.sendto(answer.to_wire(), addr)


@contextlib.asynccontextmanager
async def _service_lab() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    servers = [await asyncio.start_server(handler, LAB, port) for port, handler in SERVICES.items()]
    transports = [
        (await loop.create_datagram_endpoint(lambda a=address: _Resolver(a), local_addr=(address, 53)))[0]  # type: ignore[misc]
        for address in RESOLVERS
    ]
    try:
        yield
    finally:
        for transport in transports:
            transport.close()
        for server in servers:
            server.close()
            await server.wait_closed()


def test_probe_declarations_hold_on_service_greetings_exposed_stores_and_dns(tmp_path: Path) -> None:
    """Banners and exposure over FTP, SMTP, POP3, IMAP, Telnet, SSH, HTTP, Redis, Memcached, Elasticsearch and
    Docker stand-ins (a silent port and bytes of no protocol too); DNS over two resolvers for a mail domain."""
    require(os.geteuid() == 0, "needs root to listen on ports 21-587 and 53 of a loopback address")
    system = {"owner": {"department": "ops"}, "tier": "city", "mlps_level": 3}
    doc = {
        "scope": {"allow": ["127.82.1.0/24", "lab.example"]},
        "systems": [
            {**system, "id": "services", "name": "S", "endpoints": [{"host": LAB, "ports": sorted(SERVICES)}]},
            {
                **system,
                "id": "mail",
                "name": "M",
                "tags": ["mail"],
                "endpoints": [{"url": "https://mail.lab.example/"}],
            },
        ],
    }
    collectors = {
        "probes": ["banners", "exposure", "dns"],
        "connect_timeout": 1.0,
        "per_target_rate": 500,
        "per_target_burst": 200,
        "dns": {"resolvers": list(RESOLVERS)},
    }

    async def run() -> list[Observation]:
        async with _service_lab():
            return await _sweep(doc, tmp_path, collectors)

    observations = asyncio.run(run())
    services = {o.data.get("service") for o in observations if o.status == ObservationStatus.OK}
    assert services >= {"ftp", "smtp", "pop3", "imap", "ssh", "telnet", "http", "redis", "memcached", "unidentified"}
    (named,) = [o for o in observations if o.kind == "dns" and o.status == ObservationStatus.OK]
    assert named.data["resolvers_disagree"] is True and named.data["dmarc.policy"] == "reject"
    assert _undeclared(observations) == {}


def _detector_undeclared(observations: list[Observation]) -> dict[str, list[str]]:
    declared = declared_fields()
    out: dict[str, set[str]] = {}
    for o in observations:
        missing = set(o.data) - declared.get(o.kind, frozenset({"<kind not declared>"}))
        if missing:
            out.setdefault(o.kind, set()).update(missing)
    return {k: sorted(v) for k, v in out.items()}


def test_detector_declarations_hold_on_the_shipped_captures(tmp_path: Path) -> None:
    registry_file = tmp_path / "registry.yaml"
    registry_file.write_text(
        yaml.safe_dump(
            {
                "scope": {"allow": ["198.18.61.0/24", "198.18.62.0/24"]},
                "systems": [
                    {
                        "id": "portal",
                        "name": "P",
                        "owner": {"department": "ops"},
                        "tier": "city",
                        "mlps_level": 3,
                        "endpoints": [{"host": "198.18.61.10", "ports": [21, 23, 8080]}],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    registry = load_registry(registry_file)
    intel = load_intel([shipped_intel_dir()])
    observations = [
        o for path in sorted(CAPTURES.glob("*.pcap*")) for o in analyze_file(path, registry, intel).observations
    ]
    # a live window stamps its loss on every detection
    analyzer = Analyzer(registry, intel, "sniff", "eth1")
    for batch in CaptureReader(CAPTURES / "portscan_syn.pcap").batches():
        analyzer.feed(batch)
    observations += analyzer.observations(dropped=3)
    observations.append(capture_observation("eth1", "tcp", 10.0, SniffResult([], packets=90, received=100, dropped=10)))
    kinds = {o.kind for o in observations}
    assert kinds >= {k for declared in traffic_producers().values() for k in declared}, "a declared kind never seen"
    assert _detector_undeclared(observations) == {}
    assert set(capture_observation("i", None, 1.0, SniffResult([], 0)).data) <= LiveCapture.fields["traffic.capture"]
