"""The exposure probe (and the banner probe, on the same servers) against real services in network namespaces,
judged by the shipped rules.

Host `open` runs redis-server without a password, memcached, vsftpd with anonymous login, GNU
inetutils telnetd (via inetutils-inetd) and dropbear. Host `locked` runs redis-server with
`requirepass` and vsftpd without anonymous login. Elasticsearch, MongoDB and the Docker Engine are
not packaged in Debian, so host `apis` runs a small stand-in (`STANDIN` below) that answers
their read-only endpoints with the documented response shapes.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.collectors.banners import BannerProbe
from sentinel.collectors.base import Probe
from sentinel.collectors.exposure import ExposureProbe
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, run_job
from sentinel.collectors.vulnerable_versions import load_catalogue
from sentinel.config.settings import CollectorSettings
from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import RuleSet
from sentinel.models import Observation
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Registry, System
from sentinel.registry.scope import Scope
from tests.netns import Host, NetnsLab, netns_lab, require_tool
from tests.support.registry_files import system_doc

pytestmark = pytest.mark.netns

OPEN, LOCKED, APIS, HOSTILE = "198.18.31.10", "198.18.31.20", "198.18.31.30", "198.18.31.40"
OPEN_V6 = "fd00:5e17::31:10"
SETTINGS = CollectorSettings(connect_timeout=2.0, per_target_rate=200, per_target_burst=100, retries=0)

STANDIN = r"""
import asyncio, json, struct, sys

def bson(doc):
    body = b""
    for key, value in doc.items():
        k = key.encode() + b"\x00"
        if isinstance(value, bool):
            body += b"\x08" + k + (b"\x01" if value else b"\x00")
        elif isinstance(value, int):
            body += b"\x10" + k + struct.pack("<i", value)
        elif isinstance(value, float):
            body += b"\x01" + k + struct.pack("<d", value)
        elif isinstance(value, str):
            data = value.encode() + b"\x00"
            body += b"\x02" + k + struct.pack("<i", len(data)) + data
        elif isinstance(value, list):
            inner = bson({str(i): v for i, v in enumerate(value)})
            body += b"\x04" + k + inner
        elif isinstance(value, dict):
            body += b"\x03" + k + bson(value)
    return struct.pack("<i", len(body) + 5) + body + b"\x00"

def command_name(doc):
    end = doc.index(b"\x00", 5)
    return doc[5:end].decode()

async def mongo(reader, writer):
    while True:
        head = await reader.readexactly(16)
        length, request_id, _, opcode = struct.unpack("<iiii", head)
        body = await reader.readexactly(length - 16)
        name = command_name(body[5:])
        if name == "hello":
            doc = {"isWritablePrimary": True, "maxWireVersion": 21, "ok": 1.0}
        elif name == "buildInfo":
            doc = {"version": "7.0.14", "ok": 1.0}
        else:
            doc = {"databases": [{"name": "admin"}, {"name": "citizens"}], "ok": 1.0}
        payload = struct.pack("<I", 0) + b"\x00" + bson(doc)
        writer.write(struct.pack("<iiii", 16 + len(payload), 1, request_id, 2013) + payload)
        await writer.drain()

def http(answers):
    async def serve(reader, writer):
        request = await reader.readuntil(b"\r\n\r\n")
        path = request.split(b" ")[1].decode()
        status, doc = answers.get(path, (404, {"message": "page not found"}))
        body = json.dumps(doc).encode()
        head = b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (status, len(body))
        writer.write(head + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()
    return serve

ES = {"/": (200, {"name": "node-1", "cluster_name": "city-logs", "version": {"number": "1.4.2"},
                  "tagline": "You Know, for Search"})}
DOCKER = {"/version": (200, {"Version": "24.0.7", "ApiVersion": "1.43", "Os": "linux", "KernelVersion": "6.1.0"})}

async def main():
    servers = [await asyncio.start_server(mongo, "0.0.0.0", 27017),
               await asyncio.start_server(http(ES), "0.0.0.0", 9200),
               await asyncio.start_server(http(DOCKER), "0.0.0.0", 2375)]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))

asyncio.run(main())
"""


HOSTILE_SERVER = r"""
import asyncio

async def flood(reader, writer):  # an endless greeting
    try:
        while True:
            writer.write(b"220-" + b"A" * 1000 + b"\r\n")
            await writer.drain()
    except (ConnectionError, OSError):
        return  # the prober hung up: that is the point of the flood

async def silent(reader, writer):  # accepts, never speaks
    await reader.read()

async def garbage(reader, writer):  # bytes of no protocol (after the client spoke, if it speaks first)
    if writer.get_extra_info("sockname")[1] != 23:
        await reader.read(1)
    writer.write(bytes(range(256)) * 4)
    await writer.drain()
    await reader.read()

async def main():
    servers = [await asyncio.start_server(flood, "0.0.0.0", 21),
               await asyncio.start_server(silent, "0.0.0.0", 22),
               await asyncio.start_server(garbage, "0.0.0.0", 23),
               await asyncio.start_server(garbage, "0.0.0.0", 6379),
               await asyncio.start_server(garbage, "0.0.0.0", 27017)]
    await asyncio.gather(*(s.serve_forever() for s in servers))

asyncio.run(main())
"""


def _vsftpd_conf(path: Path, root: Path, anonymous: bool) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            listen=YES
            listen_ipv6=NO
            anonymous_enable={"YES" if anonymous else "NO"}
            local_enable={"NO" if anonymous else "YES"}
            write_enable=NO
            anon_root={root}
            secure_chroot_dir=/var/run/vsftpd/empty
            background=NO
            seccomp_sandbox=NO
            pasv_enable=NO
            delay_failed_login=0
            """
        )
    )
    return path


def _no_dns_in(host: Host) -> Path:
    """telnetd looks up the client's name; with no resolver in the namespace it must fail fast, not hang."""
    folder = Path("/etc/netns") / host.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "resolv.conf").write_text("options timeout:1 attempts:1\n")
    return folder


def _wait_ports(host: Host, ports: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ports)
    while pending and time.monotonic() < deadline:
        out = host.run("ss", "-ltnH", check=False).stdout
        pending = {p for p in pending if f":{p} " not in out}
        if pending:
            time.sleep(0.1)
    assert not pending, f"servers did not start listening on {sorted(pending)} in {host.name}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsLab]:
    for tool in ("redis-server", "memcached", "vsftpd", "inetutils-inetd", "dropbear", "dropbearkey", "ss"):
        require_tool(tool)
    require_tool("telnetd")
    work = tmp_path_factory.mktemp("services")
    root = work / "ftproot"
    root.mkdir(mode=0o755)
    (work / "inetd.conf").write_text("telnet stream tcp nowait root /usr/sbin/telnetd telnetd\n")
    subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(work / "hostkey")], check=True, capture_output=True)
    (work / "standin.py").write_text(STANDIN)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    with netns_lab() as lab:
        dns_folders = []
        try:
            open_host = lab.add_host(OPEN, OPEN_V6)
            dns_folders.append(_no_dns_in(open_host))
            common = ("--bind", "0.0.0.0", "--save", "", "--appendonly", "no", "--dir", str(work))
            open_host.popen("redis-server", "--port", "6379", "--protected-mode", "no", *common, **quiet)
            open_host.popen("memcached", "-u", "nobody", "-l", "0.0.0.0", "-p", "11211", "-U", "0", **quiet)
            open_host.popen("vsftpd", str(_vsftpd_conf(work / "open.conf", root, anonymous=True)), **quiet)
            open_host.popen("inetutils-inetd", "-d", "-p", str(work / "inetd.pid"), str(work / "inetd.conf"), **quiet)
            open_host.popen("dropbear", "-F", "-E", "-p", "22", "-r", str(work / "hostkey"), **quiet)
            open_host.popen(sys.executable, "-m", "http.server", "80", "--directory", str(root), **quiet)

            locked = lab.add_host(LOCKED)
            locked.popen("redis-server", "--port", "6379", "--requirepass", "not-sent-by-sentinel", *common, **quiet)
            locked.popen("vsftpd", str(_vsftpd_conf(work / "locked.conf", root, anonymous=False)), **quiet)

            apis = lab.add_host(APIS)
            apis.popen(sys.executable, str(work / "standin.py"), **quiet)

            hostile = lab.add_host(HOSTILE)
            (work / "hostile.py").write_text(HOSTILE_SERVER)
            hostile.popen(sys.executable, str(work / "hostile.py"), **quiet)

            _wait_ports(open_host, [6379, 11211, 21, 23, 22, 80])
            _wait_ports(locked, [6379, 21])
            _wait_ports(apis, [27017, 9200, 2375])
            _wait_ports(hostile, [21, 22, 23, 6379, 27017])
            yield lab
        finally:
            for folder in dns_folders:
                shutil.rmtree(folder, ignore_errors=True)


def _system(system_id: str, address: str, ports: list[int]) -> System:
    return System.model_validate(
        system_doc(system_id, system_id, [{"host": address, "ports": ports}], 3, department="lab")
    )


def _sweep(probe: Probe, system: System) -> tuple[list[Observation], dict[tuple[str, str], bool]]:
    """Run the probe's jobs for one system and judge the observations with the shipped rules."""
    registry = Registry(scope=Scope(allow=["198.18.0.0/16", "fd00:5e17::/64"]), systems=(system,))

    async def go() -> list[Observation]:
        net = ScopedNetwork(registry.scope, SETTINGS)
        try:
            batches = [await run_job(PlannedJob(probe, job), net, 30.0) for job in probe.plan(system)]
        finally:
            await net.close()
        return [o for batch in batches for o in batch]

    observations = asyncio.run(go())
    rules = RuleSet(load_rules([shipped_rules_dir() / "services"]))
    verdicts = {(v.rule.id, v.target): v.present for v in rules.evaluate_stateless(observations, registry)}
    return observations, verdicts


def _by_target(observations: list[Observation], kind: str) -> dict[str, Observation]:
    return {o.target: o for o in observations if o.kind == kind}


def test_banners_of_real_servers(lab: NetnsLab) -> None:
    observations, verdicts = _sweep(BannerProbe(SETTINGS), _system("open-host", OPEN, [22, 80]))
    seen = _by_target(observations, "banner")
    ssh, ftp, telnet = seen[f"{OPEN}:22/tcp"], seen[f"{OPEN}:21/tcp"], seen[f"{OPEN}:23/tcp"]
    assert (ssh.data["service"], ssh.data["product"], ssh.data["banner"]) == (
        "ssh",
        "dropbear",
        f"SSH-2.0-dropbear_{ssh.data['version']}",
    )
    assert (ftp.data["service"], ftp.data["product"], ftp.data["version"]) == ("ftp", "vsftpd", "3.0.3")
    assert ftp.data["banner"] == "220 (vsFTPd 3.0.3)"
    assert telnet.data["service"] == "telnet" and "DO terminal-type" in telnet.data["telnet.options"]
    assert telnet.data["banner"].endswith("login:")

    assert verdicts[("service_no_cleartext_login", f"{OPEN}:23/tcp")] is True
    assert verdicts[("service_no_cleartext_login", f"{OPEN}:21/tcp")] is True
    assert verdicts[("service_no_cleartext_login", f"{OPEN}:22/tcp")] is False
    assert verdicts[("service_banner_version_hidden", f"{OPEN}:21/tcp")] is True
    assert verdicts[("service_banner_version_hidden", f"{OPEN}:23/tcp")] is False
    assert verdicts[("service_version_not_vulnerable", f"{OPEN}:21/tcp")] is False
    assert ("service_version_not_vulnerable", f"{OPEN}:23/tcp") not in verdicts  # no version in the banner


def test_unauthenticated_redis_memcached_and_anonymous_ftp(lab: NetnsLab) -> None:
    observations, verdicts = _sweep(ExposureProbe(SETTINGS), _system("open-host", OPEN, [22]))
    seen = _by_target(observations, "exposure")
    redis = seen[f"{OPEN}:6379/tcp"].data
    assert (redis["unauthenticated"], redis["redis.ping"], redis["redis.info"]) == (True, "+PONG", True)
    assert redis["version"] and redis["product"] == "redis"
    memcached = seen[f"{OPEN}:11211/tcp"].data
    assert (memcached["unauthenticated"], memcached["memcached.stats"]) == (True, True)
    assert seen[f"{OPEN}:21/tcp"].data["ftp.reply"].startswith("230")

    for port in (6379, 11211, 21):
        assert verdicts[("service_requires_authentication", f"{OPEN}:{port}/tcp")] is True
    for port in (27017, 9200, 2375):  # nothing listens there on this host
        assert seen[f"{OPEN}:{port}/tcp"].data["reachable"] is False
        assert verdicts[("service_requires_authentication", f"{OPEN}:{port}/tcp")] is False


def test_password_protected_services_are_not_exposed(lab: NetnsLab) -> None:
    observations, verdicts = _sweep(ExposureProbe(SETTINGS), _system("locked-host", LOCKED, [22]))
    seen = _by_target(observations, "exposure")
    redis = seen[f"{LOCKED}:6379/tcp"].data
    assert (redis["unauthenticated"], redis["auth_required"]) == (False, "NOAUTH")
    assert "version" not in redis
    assert seen[f"{LOCKED}:21/tcp"].data["ftp.reply"].startswith("530")
    assert verdicts[("service_requires_authentication", f"{LOCKED}:6379/tcp")] is False
    assert verdicts[("service_requires_authentication", f"{LOCKED}:21/tcp")] is False
    assert ("service_version_not_vulnerable", f"{LOCKED}:6379/tcp") not in verdicts  # no version seen: unknown
    assert not any(present for (rule, _), present in verdicts.items() if rule == "service_requires_authentication")


def test_mongodb_elasticsearch_docker_standins(lab: NetnsLab) -> None:
    observations, verdicts = _sweep(ExposureProbe(SETTINGS), _system("api-host", APIS, [443]))
    seen = _by_target(observations, "exposure")
    mongo = seen[f"{APIS}:27017/tcp"].data
    assert (mongo["unauthenticated"], mongo["version"], mongo["mongodb.database_count"]) == (True, "7.0.14", 2)
    es = seen[f"{APIS}:9200/tcp"].data
    assert (es["elasticsearch.cluster_name"], es["version"], es["cves"]) == ("city-logs", "1.4.2", ["CVE-2015-1427"])
    docker = seen[f"{APIS}:2375/tcp"].data
    assert (docker["docker.api_version"], docker["version"]) == ("1.43", "24.0.7")
    for port in (27017, 9200, 2375):
        assert verdicts[("service_requires_authentication", f"{APIS}:{port}/tcp")] is True
    assert verdicts[("service_version_not_vulnerable", f"{APIS}:9200/tcp")] is True
    assert verdicts[("service_version_not_vulnerable", f"{APIS}:2375/tcp")] is False


def test_out_of_scope_host_is_never_contacted() -> None:
    system = _system("elsewhere", "192.0.2.77", [22])
    registry = Registry(scope=Scope(allow=["198.18.0.0/16"]), systems=(system,))

    async def go() -> tuple[list[Observation], int]:
        net = ScopedNetwork(registry.scope, SETTINGS)
        probe = BannerProbe(SETTINGS)
        out = [o for job in probe.plan(system) for o in await run_job(PlannedJob(probe, job), net, 5.0)]
        await net.close()
        return out, sum(net.sent.values())

    observations, sent = asyncio.run(go())
    assert sent == 0
    assert [(o.status.value, o.data["error_kind"]) for o in observations] == [("error", "out_of_scope")]


def test_vulnerable_version_from_a_real_redis(lab: NetnsLab, tmp_path: Path) -> None:
    catalogue_file = tmp_path / "vulnerable_versions.yaml"
    catalogue_file.write_text(
        "entries:\n"
        "  - {product: redis, fixed: '999.0', cves: [CVE-2099-0001], summary: every release}\n"
        "  - {product: memcached, fixed: '1.0', cves: [CVE-2099-0002], summary: only ancient releases}\n"
        "  - {product: simplehttp, fixed: '99', cves: [CVE-2099-0003], summary: python's http.server}\n"
    )
    catalogue = load_catalogue(catalogue_file)
    observations, verdicts = _sweep(ExposureProbe(SETTINGS, catalogue=catalogue), _system("open-host", OPEN, [22]))
    redis = _by_target(observations, "exposure")[f"{OPEN}:6379/tcp"].data
    assert redis["cves"] == ["CVE-2099-0001"]
    assert verdicts[("service_version_not_vulnerable", f"{OPEN}:6379/tcp")] is True
    assert verdicts[("service_version_not_vulnerable", f"{OPEN}:11211/tcp")] is False
    assert ("service_version_not_vulnerable", f"{OPEN}:21/tcp") not in verdicts  # the banner probe owns FTP

    observations, verdicts = _sweep(BannerProbe(SETTINGS, catalogue=catalogue), _system("web", OPEN, [80]))
    assert _by_target(observations, "banner")[f"{OPEN}:80/tcp"].data["cves"] == ["CVE-2099-0003"]
    assert verdicts[("service_version_not_vulnerable", f"{OPEN}:80/tcp")] is True
    assert verdicts[("service_version_not_vulnerable", f"{OPEN}:21/tcp")] is False


def test_hostile_servers_give_bounded_facts_or_errors(lab: NetnsLab) -> None:
    started = time.monotonic()
    banners, _ = _sweep(BannerProbe(SETTINGS), _system("hostile", HOSTILE, [22]))
    exposure, verdicts = _sweep(ExposureProbe(SETTINGS), _system("hostile", HOSTILE, [22]))
    assert time.monotonic() - started < 4 * SETTINGS.connect_timeout + 5
    seen = _by_target(banners, "banner")
    flood = seen[f"{HOSTILE}:21/tcp"].data
    assert flood["banner_bytes"] <= 4096 and len(flood["banner"]) <= 256
    silent = seen[f"{HOSTILE}:22/tcp"]  # accepted, said nothing: could not observe, not "version hidden"
    assert (silent.status.value, silent.data["error_kind"], silent.data["service"]) == ("error", "timeout", "ssh")
    assert "version_disclosed" not in silent.data and "cleartext_login" not in silent.data
    telnet = seen[f"{HOSTILE}:23/tcp"].data  # binary noise: bounded escaped bytes, no service claimed
    assert (telnet["service"], telnet["banner_bytes"]) == ("unidentified", 1024)
    assert "product" not in telnet and "cleartext_login" not in telnet and len(telnet["banner"]) <= 256
    for port in (6379, 27017):
        observation = _by_target(exposure, "exposure")[f"{HOSTILE}:{port}/tcp"]
        assert (observation.status.value, observation.data["error_kind"]) == ("error", "protocol"), observation
        assert ("service_requires_authentication", observation.target) not in verdicts


def test_ipv6_target(lab: NetnsLab) -> None:
    observations, verdicts = _sweep(BannerProbe(SETTINGS), _system("open-v6", OPEN_V6, [22]))
    ssh = _by_target(observations, "banner")[f"[{OPEN_V6}]:22/tcp"]
    assert (ssh.data["address"], ssh.data["product"]) == (OPEN_V6, "dropbear")
    assert verdicts[("service_no_cleartext_login", f"[{OPEN_V6}]:22/tcp")] is False
