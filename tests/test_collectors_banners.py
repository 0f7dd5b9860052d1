"""The banner probe against real hostile and honest servers on loopback, judged by the shipped rules.

A service is named only by a greeting that parses; noise is `unidentified` (no login or version claim),
and a port that accepts but never speaks is an error observation, so no rule opens or resolves on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sentinel.collectors.banners import BannerProbe
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.protocols.telnet import DO, IAC, WILL
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.collectors.service_common import ServiceOptions
from sentinel.config.settings import CollectorSettings
from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet
from sentinel.models import Observation
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Registry, System
from sentinel.registry.scope import Scope

NET = "127.115.0.0/16"
SETTINGS = CollectorSettings(connect_timeout=1.0, per_target_rate=200, per_target_burst=100, retries=0)
SETTINGS = SETTINGS.model_copy(update={"banners": ServiceOptions(high_risk_ports=[])})  # probe only the declared ports
RULES = RuleSet(load_rules([shipped_rules_dir() / "services"]))

Greeter = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    """What one loopback server sends, and every byte the probe sent it."""

    send: Callable[[], bytes] | None  # None: accept and never speak
    close_at_once: bool = False
    received: bytearray = field(default_factory=bytearray)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.close_at_once:
            writer.close()
            return
        if self.send is not None:
            writer.write(self.send())
            await writer.drain()
        with contextlib.suppress(ConnectionError):  # the probe may hang up first: that is its right
            while chunk := await reader.read(4096):
                self.received += chunk
        writer.close()


def _sweep(address: str, servers: dict[int, Server]) -> tuple[dict[int, Observation], dict[tuple[str, int], bool]]:
    """Serve `servers` on `address`, run the banner probe on those ports, judge with the shipped rules."""
    system = System.model_validate(
        {
            "id": "lab",
            "name": "lab",
            "owner": {"department": "lab"},
            "tier": "city",
            "mlps_level": 3,
            "endpoints": [{"host": address, "ports": sorted(servers)}],
        }
    )
    registry = Registry(scope=Scope(allow=[NET]), systems=(system,))
    probe = BannerProbe(SETTINGS)

    async def go() -> list[Observation]:
        listening = [await asyncio.start_server(s.handle, address, port) for port, s in servers.items()]
        net = ScopedNetwork(registry.scope, SETTINGS)
        try:
            batches = [await run_job(PlannedJob(probe, job), net, 30.0) for job in probe.plan(system)]
        finally:
            await net.close()
            for server in listening:
                server.close()
                await server.wait_closed()
        return [o for batch in batches for o in batch]

    observations = asyncio.run(go())
    by_port = {int(o.data["port"]): o for o in observations}
    verdicts = {
        (v.rule.id, int(v.target.split(":")[1].split("/")[0])): v.present
        for v in RULES.evaluate_stateless(observations, registry)
    }
    return by_port, verdicts


def _noise(seed: int) -> bytes:
    """Random bytes that also hold Telnet commands (IAC DO / IAC WILL) somewhere past the first byte."""
    rng = random.Random(seed)
    raw = bytearray(rng.randbytes(600))
    raw[0] = 0x41 if raw[0] == IAC else raw[0]
    raw[100:103] = bytes((IAC, DO, 24))
    raw[300:303] = bytes((IAC, WILL, 1))
    return bytes(raw)


def test_random_bytes_on_login_ports_claim_no_service() -> None:
    for seed in range(5):
        servers = {port: Server(lambda seed=seed: _noise(seed)) for port in (21, 23, 25, 110)}
        seen, verdicts = _sweep("127.115.0.10", servers)
        for port, obs in seen.items():
            assert obs.status.value == "ok", obs
            data = obs.data
            assert data["service"] == "unidentified", (seed, port, data)
            assert "cleartext_login" not in data and "version_disclosed" not in data and "product" not in data
            assert len(data["banner"]) <= 256 and data["banner"].isprintable() and "\\x" in data["banner"]
            assert data["banner_bytes"] > 0
            # neither opened nor resolved: the rules have nothing to read
            assert ("service_no_cleartext_login", port) not in verdicts
            assert ("service_banner_version_hidden", port) not in verdicts
        # Telnet commands inside a non-Telnet stream are data: no refusals were sent back
        for port, server in servers.items():
            assert bytes((IAC,)) not in server.received, (seed, port, bytes(server.received))


def test_telnet_negotiation_names_telnet_only_when_the_stream_opens_with_it() -> None:
    negotiation = bytes((IAC, DO, 24, IAC, WILL, 1))
    servers = {
        2323: Server(lambda: negotiation + b"\r\nDebian GNU/Linux 12\r\nlab login: "),
        21: Server(lambda: b"220 FTP server ready\r\n" + negotiation),  # an FTP greeting that holds IAC bytes
        23: Server(lambda: negotiation + bytes(range(128, 256))),  # negotiation, then no text at all
    }
    seen, verdicts = _sweep("127.115.0.20", servers)
    telnet = seen[2323].data
    assert telnet["service"] == "telnet" and "DO terminal-type" in telnet["telnet.options"]
    assert telnet["banner"].endswith("login:") and telnet["cleartext_login"] is True
    assert servers[2323].received.startswith(bytes((IAC, 252, 24, IAC, 254, 1)))  # WONT / DONT
    assert verdicts[("service_no_cleartext_login", 2323)] is True

    ftp = seen[21].data
    assert (ftp["service"], ftp["ftp.code"], ftp["cleartext_login"]) == ("ftp", 220, True)
    assert bytes(servers[21].received) == b"QUIT\r\n"  # the goodbye, and no Telnet refusal
    assert "telnet.options" not in ftp

    assert seen[23].data["service"] == "unidentified" and "cleartext_login" not in seen[23].data
    assert ("service_no_cleartext_login", 23) not in verdicts


def test_real_greetings_are_still_identified() -> None:
    servers = {
        21: Server(lambda: b"220 (vsFTPd 3.0.3)\r\n"),
        22: Server(lambda: b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"),
        25: Server(lambda: b"220 mx.example.cn ESMTP Postfix\r\n"),
        110: Server(lambda: b"220 not a pop3 greeting\r\n"),
    }
    seen, verdicts = _sweep("127.115.0.30", servers)
    assert (seen[21].data["service"], seen[21].data["product"], seen[21].data["version"]) == ("ftp", "vsftpd", "3.0.3")
    assert verdicts[("service_no_cleartext_login", 21)] is True
    assert verdicts[("service_banner_version_hidden", 21)] is True
    ssh = seen[22].data
    assert (ssh["service"], ssh["version"], ssh["cleartext_login"]) == ("ssh", "9.2p1", False)
    assert verdicts[("service_no_cleartext_login", 22)] is False
    assert seen[25].data["service"] == "smtp" and verdicts[("service_banner_version_hidden", 25)] is False
    # a numbered reply on the POP3 port is neither POP3 nor (on the port's word alone) anything else
    assert seen[110].data["service"] == "unidentified"


def test_a_port_that_never_speaks_is_not_observed() -> None:
    servers = {22: Server(None), 2222: Server(None, close_at_once=True), 21: Server(None)}
    seen, verdicts = _sweep("127.115.0.40", servers)
    for port, kind in ((22, "timeout"), (2222, "protocol"), (21, "timeout")):
        obs = seen[port]
        assert obs.status.value == "error" and obs.data["error_kind"] == kind, obs
        assert obs.error and "no greeting" in obs.error
        assert "version_disclosed" not in obs.data and "banner" not in obs.data and "cleartext_login" not in obs.data
        assert obs.data["reachable"] is True
        for rule in ("service_banner_version_hidden", "service_no_cleartext_login", "service_version_not_vulnerable"):
            assert (rule, port) not in verdicts, (rule, port)
