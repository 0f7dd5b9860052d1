"""DNS probe against two real dnsmasq resolvers in namespaces: one truthful, one that hijacks a name.

Names (all under the reserved `.test` TLD):
- portal.lab.test: true answer 198.18.40.10 + fd00:5e17::40:10; the hijacking resolver says 203.0.113.66
- www.lab.test:    the same dual-stack answer from both; CAA (issue letsencrypt.org) at lab.test
- v4only.other.test: IPv4 only, and no CAA anywhere up its tree
- mail.lab.test:   mail domain lab.test with SPF `-all` and DMARC `p=none` (weak)
- mail.other.test: mail domain other.test with no SPF and DMARC `p=reject`
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sentinel.collectors.dns_probe import DnsProbe, system_resolvers
from sentinel.collectors.network import ScopedNetwork
from sentinel.collectors.runner import PlannedJob, run_job
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

TRUE_DNS, HIJACK_DNS, BROKEN_DNS = "198.18.32.10", "198.18.32.20", "198.18.32.30"
SCOPE = Scope(allow=["198.18.0.0/16", "fd00:5e17::/64", "lab.test", "other.test"])
SETTINGS = CollectorSettings(connect_timeout=1.0, per_target_rate=500, per_target_burst=200, retries=0)
# CAA 0 issue "letsencrypt.org" as RFC 3597 hex rdata
CAA_HEX = "0005" + b"issue".hex() + b"letsencrypt.org".hex()

COMMON_RECORDS = [
    "--host-record=www.lab.test,198.18.40.11,fd00:5e17::40:11",
    "--host-record=v4only.other.test,198.18.40.12",
    "--host-record=mail.lab.test,198.18.40.25",
    "--host-record=mail.other.test,198.18.40.26",
    f"--dns-rr=lab.test,257,{CAA_HEX}",
    "--txt-record=lab.test,v=spf1 mx -all",
    "--txt-record=_dmarc.lab.test,v=DMARC1; p=none; rua=mailto:dmarc@lab.test",
    "--txt-record=_dmarc.other.test,v=DMARC1; p=reject",
]

BROKEN = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
while True:
    data, peer = s.recvfrom(4096)
    s.sendto(data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x07garbage", peer)
"""


def _dnsmasq(host: Host, *records: str) -> None:
    host.popen(
        "dnsmasq",
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--user=root",
        "--pid-file=",
        "--port=53",
        f"--listen-address={host.ipv4}",
        "--bind-interfaces",
        *records,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_udp(host: Host, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ":53 " in host.run("ss", "-lunH", check=False).stdout:
            return
        time.sleep(0.1)
    raise AssertionError(f"no DNS server listening in {host.name}")


@pytest.fixture(scope="module")
def lab() -> Iterator[NetnsLab]:
    require_tool("dnsmasq")
    require_tool("ss")
    with netns_lab() as lab:
        true_dns = lab.add_host(TRUE_DNS)
        _dnsmasq(true_dns, "--host-record=portal.lab.test,198.18.40.10,fd00:5e17::40:10", *COMMON_RECORDS)
        hijack = lab.add_host(HIJACK_DNS)
        _dnsmasq(hijack, "--address=/portal.lab.test/203.0.113.66", *COMMON_RECORDS)
        broken = lab.add_host(BROKEN_DNS)
        broken.popen(sys.executable, "-c", BROKEN, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for host in (true_dns, hijack, broken):
            _wait_udp(host)
        yield lab


def _system(system_id: str, endpoints: list[dict[str, object]], tags: list[str] | None = None) -> System:
    return System.model_validate(system_doc(system_id, system_id, endpoints, 3, department="lab", tags=tags or []))


SYSTEMS = (
    _system(
        "portal", [{"url": "https://portal.lab.test/"}, {"url": "https://www.lab.test/"}, {"host": "198.18.40.10"}]
    ),
    _system("legacy", [{"url": "http://v4only.other.test/"}]),
    _system("mail-lab", [{"host": "mail.lab.test", "ports": [25]}], tags=["mail"]),
    _system("mail-other", [{"host": "mail.other.test", "ports": [993]}], tags=["mail"]),
)


def _sweep(
    resolvers: list[str], scope: Scope = SCOPE
) -> tuple[dict[str, Observation], dict[tuple[str, str], bool], int]:
    registry = Registry(scope=scope, systems=SYSTEMS)
    probe = DnsProbe(SETTINGS, resolvers=resolvers)

    async def go() -> tuple[list[Observation], int]:
        net = ScopedNetwork(registry.scope, SETTINGS)
        jobs = [PlannedJob(probe, job) for system in SYSTEMS for job in probe.plan(system)]
        batches = await asyncio.gather(*(run_job(job, net, 20.0) for job in jobs))
        await net.close()
        return [o for batch in batches for o in batch], sum(net.sent.values())

    observations, sent = asyncio.run(go())
    rules = RuleSet(load_rules([shipped_rules_dir() / "dns"]))
    verdicts = {(v.rule.id, v.target): v.present for v in rules.evaluate_stateless(observations, registry)}
    return {o.target: o for o in observations}, verdicts, sent


def test_hijacked_answer_and_resolver_disagreement(lab: NetnsLab) -> None:
    seen, verdicts, _ = _sweep([TRUE_DNS, HIJACK_DNS])
    portal = seen["portal.lab.test"].data
    assert portal["answers_by_resolver"] == {
        TRUE_DNS: ["198.18.40.10", "fd00:5e17::40:10"],
        HIJACK_DNS: ["203.0.113.66"],
    }
    assert portal["unexpected_addresses"] == ["203.0.113.66"]
    assert portal["answers"] == ["198.18.40.10", "fd00:5e17::40:10"]
    assert verdicts[("dns_answer_matches_registry", "portal.lab.test")] is True
    assert verdicts[("dns_resolvers_consistent", "portal.lab.test")] is True
    assert verdicts[("dns_answer_matches_registry", "www.lab.test")] is False
    assert verdicts[("dns_resolvers_consistent", "www.lab.test")] is False


def test_ipv6_readiness_and_caa(lab: NetnsLab) -> None:
    seen, verdicts, _ = _sweep([TRUE_DNS])
    assert seen["www.lab.test"].data["caa.owner"] == "lab.test"
    assert seen["www.lab.test"].data["caa.records"] == ['0 issue "letsencrypt.org"']
    assert verdicts[("dns_aaaa_present", "v4only.other.test")] is True
    assert verdicts[("dns_aaaa_present", "www.lab.test")] is False
    assert verdicts[("dns_caa_present", "v4only.other.test")] is True
    assert verdicts[("dns_caa_present", "www.lab.test")] is False
    assert ("dns_resolvers_consistent", "www.lab.test") not in verdicts  # one resolver cannot disagree
    assert seen["www.lab.test"].data["resolve_ms"] >= 0


def test_spf_and_dmarc_on_mail_domains_only(lab: NetnsLab) -> None:
    seen, verdicts, _ = _sweep([TRUE_DNS])
    assert (seen["mail.lab.test"].data["spf.all"], seen["mail.lab.test"].data["dmarc.policy"]) == ("-all", "none")
    assert verdicts[("dns_mail_spf_present", "mail.lab.test")] is False
    assert verdicts[("dns_mail_dmarc_enforced", "mail.lab.test")] is True
    assert verdicts[("dns_mail_spf_present", "mail.other.test")] is True
    assert verdicts[("dns_mail_dmarc_enforced", "mail.other.test")] is False
    assert not any(rule.startswith("dns_mail_") for rule, target in verdicts if target == "www.lab.test")


def test_resolver_outside_scope_is_not_queried(lab: NetnsLab) -> None:
    seen, verdicts, sent = _sweep([TRUE_DNS], scope=Scope(allow=["198.18.40.0/24", "lab.test", "other.test"]))
    assert sent == 0
    assert {o.data["error_kind"] for o in seen.values()} == {"out_of_scope"}
    assert not verdicts


def test_malformed_answers_are_errors_not_facts(lab: NetnsLab) -> None:
    seen, verdicts, _ = _sweep([BROKEN_DNS])
    portal = seen["portal.lab.test"]
    assert portal.status.value == "error" and portal.data["error_kind"] == "protocol"
    assert "malformed DNS answer" in (portal.error or "")
    assert not verdicts


def test_resolv_conf_parsing(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nnameserver 10.0.0.53\nnameserver fe80::1%eth0\nnameserver bogus\nsearch x\n")
    assert system_resolvers(conf) == ["10.0.0.53", "fe80::1"]
    assert system_resolvers(tmp_path / "missing") == []


def test_resolve_ms_excludes_the_rate_limiter_wait(lab: NetnsLab) -> None:
    """resolve_ms is the A exchange alone: a job that queued for the resolver's rate limit does not count the wait."""
    slow = SETTINGS.model_copy(update={"per_target_rate": 8.0, "per_target_burst": 1.0})
    registry = Registry(scope=SCOPE, systems=SYSTEMS)
    probe = DnsProbe(slow, resolvers=[TRUE_DNS])

    async def go() -> tuple[list[Observation], float]:
        net = ScopedNetwork(registry.scope, slow)
        jobs = [PlannedJob(probe, job) for system in SYSTEMS for job in probe.plan(system)]
        start = time.perf_counter()
        batches = await asyncio.gather(*(run_job(job, net, 30.0) for job in jobs))
        took = time.perf_counter() - start
        await net.close()
        return [o for batch in batches for o in batch], took

    observations, took = asyncio.run(go())
    timings = {o.target: o.data["resolve_ms"] for o in observations}
    assert len(timings) == 5 and all(o.status.value == "ok" for o in observations)
    assert took > 1.0  # positive control: at 8 questions/s the jobs really queued for admission
    assert max(timings.values()) < 60, f"resolve_ms counts the limiter's wait: {timings}"
