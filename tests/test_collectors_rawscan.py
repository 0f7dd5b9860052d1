"""Scan method choice: SYN with raw-socket rights, connect scan without (forced here), ICMP needs raw rights;
plus the raw packet helpers on known bytes."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from pathlib import Path

import pytest
import yaml

from sentinel.app import Sentinel
from sentinel.collectors import capabilities
from sentinel.collectors.icmp_probe import IcmpEchoProbe
from sentinel.collectors.network import PortState, ScopedNetwork
from sentinel.collectors.rawscan import (
    _ANC_BYTES,
    SO_TIMESTAMPNS,
    await_arrival_stamps,
    checksum,
    icmp_echo_request,
    ipv4_payload,
    parse_echo_reply,
    parse_tcp,
    received_at,
    tcp_syn,
)
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.collectors.tcp_ports import TcpPortOptions
from sentinel.config.settings import CollectorSettings, Settings
from sentinel.demo.estate import free_port
from sentinel.registry.models import System
from sentinel.registry.scope import Scope
from tests.netns import require

IP = "127.82.0.10"
SCOPE = Scope(allow=["127.82.0.0/24"])
SETTINGS = CollectorSettings(connect_timeout=0.5, retries=0, per_target_rate=1000, per_target_burst=100)


def test_checksum_and_syn_layout() -> None:
    assert checksum(b"\x45\x00\x00\x1c") == (~(0x4500 + 0x001C) & 0xFFFF)
    src, dst = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    segment = tcp_syn(40000, 443, 0xDEADBEEF, src, dst)
    sport, dport, seq, ack, offset, flags = struct.unpack_from("!HHIIBB", segment)
    assert (sport, dport, seq, ack, offset >> 4, flags) == (40000, 443, 0xDEADBEEF, 0, 6, 0x02)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(segment))
    assert checksum(pseudo + segment) == 0  # a correct checksum sums to zero
    echo = icmp_echo_request(7, 9, b"abc", v6=False)
    assert checksum(echo) == 0
    reply = b"\x00\x00" + echo[2:]
    assert parse_echo_reply(reply, v6=False) == (7, 9)
    assert parse_echo_reply(echo, v6=False) is None  # a request is not a reply


def test_parsers_reject_truncated_and_foreign_packets() -> None:
    assert ipv4_payload(b"\x45\x00") is None
    assert ipv4_payload(b"\x60" + bytes(39)) is None  # IPv6 on an IPv4 socket
    assert ipv4_payload(b"\x4f" + bytes(20)) is None  # header length beyond the packet
    assert parse_tcp("192.0.2.1", bytes(10)) is None
    assert parse_echo_reply(b"\x00", v6=True) is None


def host_system(port: int) -> System:
    return System.model_validate(
        {
            "id": "sys",
            "name": "S",
            "owner": {"department": "IT"},
            "tier": "city",
            "mlps_level": 3,
            "endpoints": [{"host": IP, "ports": [port]}],
        }
    )


async def test_forced_no_raw_rights_falls_back_to_connect_scan() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), IP, 0)
    port = server.sockets[0].getsockname()[1]
    net = ScopedNetwork(SCOPE, SETTINGS, raw_sockets=False)
    try:
        assert net.port_scan_method == "tcp-connect"
        method, states = await net.port_states(IP, [port, free_port(IP)])
        assert method == "tcp-connect"
        assert [s for s, _ in states] == [PortState.OPEN, PortState.CLOSED]
        icmp = IcmpEchoProbe(SETTINGS)
        [job] = icmp.plan(host_system(port))
        [obs] = await run_job(PlannedJob(icmp, job), net, 5)
        assert obs.status.value == "error"
        assert obs.data["error_kind"] == "unsupported"
        assert "CAP_NET_RAW" in (obs.error or "")
    finally:
        await net.close()
        server.close()


def test_sweep_reports_connect_method_when_the_capability_check_says_no(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capabilities, "raw_socket_rights", lambda: False)
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        yaml.safe_dump(
            {
                "scope": {"allow": ["127.82.0.0/24"]},
                "systems": [host_system(free_port(IP)).model_dump(mode="json", exclude_none=True)],
            }
        )
    )
    collectors = SETTINGS.model_copy(
        update={"probes": ["tcp_ports"], "tcp_ports": TcpPortOptions(high_risk_ports=[free_port(IP)])}
    )
    app = Sentinel(Settings(registry=registry, store=tmp_path / "s.db", collectors=collectors))
    try:
        outcome = app.scan()
    finally:
        app.close()
    methods = {o.data.get("method") for o in outcome.observations if o.kind in ("port", "host")}
    assert methods == {"tcp-connect"}
    assert all(o.data["state"] == "closed" for o in outcome.observations if o.kind == "port")


async def test_with_raw_rights_the_same_scan_is_half_open() -> None:
    require(os.geteuid() == 0, "needs root (raw sockets) for the SYN scan")
    server = await asyncio.start_server(lambda r, w: w.close(), IP, 0)
    port = server.sockets[0].getsockname()[1]
    net = ScopedNetwork(SCOPE, SETTINGS)
    try:
        assert net.raw_sockets
        method, states = await net.port_states(IP, [port, free_port(IP)])
        assert method == "tcp-syn"
        assert [s for s, _ in states] == [PortState.OPEN, PortState.CLOSED]
        assert all(rtt is not None and rtt >= 0 for _, rtt in states)
        rtt = await net.icmp_echo(IP)
        assert rtt is not None and rtt >= 0
    finally:
        await net.close()
        server.close()
    assert net.sent[IP] == 3  # two SYNs and one echo, each admitted by the scope check and rate limiter


async def test_scan_method_connect_setting_is_honoured() -> None:
    class WithMethod(CollectorSettings):
        scan_method: str = "connect"

    net = ScopedNetwork(SCOPE, WithMethod(), raw_sockets=True)
    assert net.port_scan_method == "tcp-connect"
    net = ScopedNetwork(SCOPE, WithMethod(scan_method="syn"), raw_sockets=False)
    assert net.port_scan_method == "tcp-connect"


def test_once_arrival_stamps_are_on_a_packet_read_late_keeps_the_time_it_arrived() -> None:
    # what an RTT stands on: a reply read 50 ms after it arrived (the event loop busy elsewhere) must carry
    # its arrival time, not the time it was read; the first socket asking for stamps only schedules them
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        assert await_arrival_stamps()
        rx.bind(("127.0.0.1", 0))
        tx.sendto(b"late", rx.getsockname())
        time.sleep(0.05)
        read_at = time.time_ns()
        _data, ancdata, _flags, _peer = rx.recvmsg(16, _ANC_BYTES)
    assert read_at - received_at(ancdata) >= 40_000_000
