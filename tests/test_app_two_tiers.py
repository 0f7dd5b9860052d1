"""Two tiers on one cluster (市区两级): a city and two district instances, each in its own network namespace with
its own vantage, probe their own systems and ship to one Elasticsearch double; the city issues an early warning
(预警通报) that both districts receive, match, notify and rectify; the city reads the whole estate back.

Topology (one lab bridge; the double and the SMTP server listen on the bridge address):
- city instance, vantage extranet: the city portal (nginx/1.27.4, not affected);
- hexi-district instance, vantage internal: its permits site (nginx/1.26.2, affected) with a management port
  declared `reachable_from: [internal]` (seen from inside: fine);
- jiangbei-district instance, vantage internet: its portal (nginx/1.24.0, affected) with the same management port
  open (seen from the Internet: the restriction finding), and a second host whose management port is firewalled.
"""

from __future__ import annotations

import contextlib
import email
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from sentinel.sinks.elasticsearch.estate import EstateReader, EstateScope
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from tests.es_double import EsDouble
from tests.netns import BRIDGE_V4, Host, NetnsLab, netns_lab
from tests.support.web_site import call

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "advisory.yaml"
RULE = "advisory_2026_017"
RESTRICTION = "port_reachable_only_from_declared_vantages"
MANAGEMENT = 8443

# A web server that names itself from a file (what an upgrade changes) and a management listener.
SERVER = """
import socket, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
version_file = sys.argv[1]
class H(BaseHTTPRequestHandler):
    def version_string(self):
        return open(version_file).read().strip()
    def do_HEAD(self):
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    do_GET = do_HEAD
    def log_message(self, *a):
        return  # quiet: the test reads what Sentinel observed, not the server's log
manage = socket.socket(); manage.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
manage.bind(("0.0.0.0", int(sys.argv[2]))); manage.listen(16)
threading.Thread(target=lambda: [manage.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()
"""


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


def system(sid: str, name: str, department: str, mail: str, tier: str, host: Host) -> dict[str, Any]:
    return {
        "id": sid,
        "name": name,
        "owner": {"department": department, "email": mail},
        "tier": tier,
        "mlps_level": 3,
        "endpoints": [
            {"host": host.ipv4, "ports": [80]},
            {"host": host.ipv4, "ports": [MANAGEMENT], "reachable_from": ["internal"], "name": "management"},
        ],
    }


class Site:
    """One instance: its namespace, its settings file, its commands."""

    def __init__(self, folder: Path, host: Host, site: str, vantage: str, systems: list[dict[str, Any]]) -> None:
        self.host, self.site = host, site
        folder.mkdir()
        registry = folder / "registry.yaml"
        registry.write_text(
            yaml.safe_dump({"scope": {"allow": ["198.18.0.0/16"]}, "systems": systems}, allow_unicode=True),
            encoding="utf-8",
        )
        self.config = folder / "sentinel.yaml"
        self.settings: dict[str, Any] = {
            "registry": str(registry),
            "store": str(folder / "s.db"),
            "site": site,
            "vantage": vantage,
            "actor": f"{site}-soc",
            "collectors": {
                "probes": ["tcp_ports", "banners"],
                "scan_method": "connect",
                "connect_timeout": 1.0,
                "retries": 0,
                "per_target_rate": 200,
                "per_target_burst": 200,
                "tcp_ports": {"high_risk_ports": []},
                "banners": {"high_risk_ports": []},
            },
        }

    def configure(self, es_url: str, smtp_port: int) -> None:
        self.settings["sinks"] = {"elasticsearch": {"url": es_url}}
        self.settings["notify"] = {
            "smtp": {"host": BRIDGE_V4, "port": smtp_port, "starttls": False, "sender": "soc@x.cn"},
            "retry_backoff": 0,
        }
        self.config.write_text(yaml.safe_dump(self.settings, allow_unicode=True), encoding="utf-8")

    def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        done = self.host.run(
            sys.executable, "-m", "sentinel", *args, "--config", str(self.config), check=False, timeout=120
        )
        assert done.returncode in ok, f"{self.site}: sentinel {' '.join(args)} -> {done.returncode}\n{done.stderr}"
        return done.stdout


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with netns_lab() as made:
        yield made


def serve(lab: NetnsLab, host: Host, folder: Path, version: str) -> Path:
    version_file = folder / f"version-{host.ipv4}"
    version_file.write_text(version, encoding="utf-8")
    host.popen(sys.executable, "-c", SERVER, str(version_file), str(MANAGEMENT))
    return version_file


def wait_serving(hosts: list[Host]) -> None:
    deadline = time.monotonic() + 15
    for host in hosts:
        while (
            host.run(
                "python3", "-c", f"import socket; socket.create_connection(('{host.ipv4}', 80), 1)", check=False
            ).returncode
            != 0
        ):
            assert time.monotonic() < deadline, f"{host.ipv4}: the lab web server did not start"
            time.sleep(0.1)


def test_city_and_districts_share_one_cluster(lab: NetnsLab, tmp_path: Path) -> None:
    city_web, hexi_web = lab.add_host("198.18.10.1"), lab.add_host("198.18.20.1")
    jb_web, jb_walled = lab.add_host("198.18.30.1"), lab.add_host("198.18.30.2")
    jb_walled.drop_tcp_ports([MANAGEMENT])
    versions = {
        "city": serve(lab, city_web, tmp_path, "nginx/1.27.4"),
        "hexi": serve(lab, hexi_web, tmp_path, "nginx/1.26.2"),
        "jb": serve(lab, jb_web, tmp_path, "nginx/1.24.0"),
    }
    serve(lab, jb_walled, tmp_path, "nginx/1.27.4")
    wait_serving([city_web, hexi_web, jb_web, jb_walled])

    city = Site(
        tmp_path / "city",
        lab.add_host("198.18.1.1"),
        "city",
        "extranet",
        [system("city-portal", "市政府门户", "市政府办公厅", "portal@x.cn", "city", city_web)],
    )
    hexi = Site(
        tmp_path / "hexi",
        lab.add_host("198.18.2.1"),
        "hexi-district",
        "internal",
        [system("hexi-permits", "河西区行政审批", "河西区行政审批局", "hexi@x.cn", "district", hexi_web)],
    )
    jiangbei = Site(
        tmp_path / "jiangbei",
        lab.add_host("198.18.3.1"),
        "jiangbei-district",
        "internet",
        [
            system("jb-portal", "江北区门户", "江北区政府办", "jb@x.cn", "district", jb_web),
            system("jb-files", "江北区文件交换", "江北区政府办", "jb@x.cn", "district", jb_walled),
        ],
    )
    sites = [city, hexi, jiangbei]
    box = Mailbox()
    with socket.socket() as spare:
        spare.bind((BRIDGE_V4, 0))
        smtp_port = int(spare.getsockname()[1])
    smtp = Controller(box, hostname=BRIDGE_V4, port=smtp_port)
    smtp.start()
    try:
        with EsDouble(host=BRIDGE_V4) as es:
            for s in sites:
                s.configure(es.url, smtp_port)
            _two_tiers(es, box, city, hexi, jiangbei, versions)
    finally:
        smtp.stop()


def _two_tiers(es: EsDouble, box: Mailbox, city: Site, hexi: Site, jiangbei: Site, versions: dict[str, Path]) -> None:
    # the city issues the warning; the districts receive it from the cluster
    city.run("advisory", "issue", str(EXAMPLE))
    city.run("sinks", "ship")
    assert set(es.docs("sentinel-advisories-*")) == {"sentinel-advisories-city/2026-017"}
    for district in (hexi, jiangbei):
        assert "2026-017: received from city" in district.run("advisory", "sync")
        assert "No new or changed" in district.run("advisory", "sync")  # a repeated sync changes nothing

    for s in (city, hexi, jiangbei):
        s.run("scan", ok=(0, 1))
        s.run("sinks", "ship")
    latest = es.docs("sentinel-findings-latest-*")
    by_site: dict[str, list[dict[str, Any]]] = {}
    for key, doc in latest.items():
        index, _, doc_id = key.partition("/")
        site, vantage = doc["sentinel"]["site"], doc["sentinel"]["vantage"]
        assert index == f"sentinel-findings-latest-{site}" and doc_id.startswith(f"{site}:{vantage}:")
        by_site.setdefault(site, []).append(doc)
    rules = {site: sorted(d["rule"]["id"] for d in docs) for site, docs in by_site.items()}
    assert RULE in rules["hexi-district"] and RULE in rules["jiangbei-district"] and RULE not in rules.get("city", [])
    # the management port answers the Internet-side instance on jb-portal only (jb-files drops it)
    restricted = [d for d in by_site["jiangbei-district"] if d["rule"]["id"] == RESTRICTION]
    assert [d["sentinel"]["system"]["id"] for d in restricted] == ["jb-portal"], restricted
    assert RESTRICTION not in rules["hexi-district"]  # the same declaration, seen from inside: as declared
    # exactly once per vantage: shipping again adds nothing, and every document is one finding
    before = len(latest)
    for s in (city, hexi, jiangbei):
        assert "shipped 0" in s.run("sinks", "ship")
    assert len(es.docs("sentinel-findings-latest-*")) == before
    assert len({d["sentinel"]["finding"]["id"] for d in latest.values()}) == before

    # owners in both districts are told
    for s in (hexi, jiangbei):
        s.run("notify")
    told = {rcpt for rcpts, m in box.messages for rcpt in rcpts if "2026-017" in _body(m)}
    assert told == {"hexi@x.cn", "jb@x.cn"}

    # the city's view: every site; a district's: its own
    reader = EstateReader(ElasticsearchSettings(url=es.url))
    try:
        assert {f.site for f in reader.rule_findings(RULE)} == {"hexi-district", "jiangbei-district"}
        own = reader.rule_findings(RULE, EstateScope(sites=("hexi-district",)))
        assert [(f.site, f.system_id) for f in own] == [("hexi-district", "hexi-permits")]
    finally:
        reader.close()

    # the city's web view of the lab estate (a real `sentinel serve` in the city's namespace, over the cluster)
    with city_web_view(city) as base:
        status, estate, _ = call(f"{base}/api/estate", CITY_TOKEN)
        assert status == 200 and {s["site"] for s in estate["sites"]} == {"city", "hexi-district", "jiangbei-district"}
        status, html, _ = call(f"{base}/estate", CITY_TOKEN)
        assert status == 200 and "hexi-district" in html and "jiangbei-district" in html and "全市态势" in html
        status, mine, _ = call(f"{base}/api/estate", HEXI_TOKEN)
        assert status == 200 and [s["site"] for s in mine["sites"]] == ["hexi-district"]
        assert call(f"{base}/api/estate/findings?site=jiangbei-district", HEXI_TOKEN)[0] == 403

    # hexi upgrades and asks for a re-check; jiangbei has not yet
    found = json.loads(hexi.run("findings", "list", "--format", "json"))
    fid = next(f["id"] for f in found if f["rule_id"] == RULE)
    versions["hexi"].write_text("nginx/1.26.3", encoding="utf-8")
    hexi.run("findings", "rectify", fid, "--note", "upgraded to 1.26.3", "--recheck", ok=(0, 1))
    hexi.run("sinks", "ship")
    table = json.loads(city.run("advisory", "progress", "2026-017", "--estate", "--format", "json"))
    rows = {r["site"]: (r["affected"], r["rectified"], r["verified"], r["overdue"]) for r in table["sites"]}
    assert rows == {"city": (0, 0, 0, 0), "hexi-district": (1, 1, 1, 0), "jiangbei-district": (1, 0, 0, 0)}, rows


CITY_TOKEN, HEXI_TOKEN = "city-operator-token-0123456789", "hexi-operator-token-0123456789"
WEB_PORT = 9118


@contextlib.contextmanager
def city_web_view(city: Site) -> Iterator[str]:
    """`sentinel serve` on the city's instance with the estate read from the cluster: a city operator, and a
    district operator limited to hexi-district."""
    settings = {
        **city.settings,
        "web": {
            "estate": "elasticsearch",
            "users": [
                {"name": "soc", "role": "operator", "token": CITY_TOKEN},
                {"name": "hexi-op", "role": "operator", "sites": ["hexi-district"], "token": HEXI_TOKEN},
            ],
        },
    }
    config = city.config.with_name("serve.yaml")
    config.write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    listen = f"{city.host.ipv4}:{WEB_PORT}"
    proc = city.host.popen(
        sys.executable, "-m", "sentinel", "serve", "--config", str(config), "--registry", settings["registry"],
        "--listen", listen, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://{listen}"
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(OSError):  # not listening yet
            if call(f"{base}/healthz", None)[0] in (200, 503):
                break
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "serve exited"
        assert time.monotonic() < deadline, "sentinel serve did not start"
        time.sleep(0.2)
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    return payload.decode() if isinstance(payload, bytes) else str(message)
