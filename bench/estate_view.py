"""The city's estate view over the shared cluster: 1,354 systems across 12 sites (the city and 11 districts).

    python -m bench.estate_view [--systems 1354] [--repeat 40] [--es-url URL]

Every site's latest-state documents (built by the sink's own `finding_document`, ids by `latest_id`) and a recent
observation of each system are bulk-loaded into the Elasticsearch test double, run in its own process as a cluster
would be (or into a real cluster with `--es-url`, under a throw-away index prefix that is deleted afterwards). The
web view (aiohttp, real HTTP on loopback) then serves /estate and /estate/findings, and each page is fetched
`--repeat` times as the city's operator and as a district's user: p50 and p95 latency and the body size are printed.
`build_estate` is also the estate the web tests check the figures of (tests/test_web_estate.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from elasticsearch import Elasticsearch, helpers

from sentinel.engine.loader import load_rules
from sentinel.findings.policy import FindingsSettings, is_overdue
from sentinel.models import Finding, FindingStatus, Observation, Vantage
from sentinel.models.finding import fingerprint
from sentinel.paths import shipped_rules_dir
from sentinel.registry.loader import load_registry_text
from sentinel.registry.models import Registry
from sentinel.sinks.base import content_id
from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.documents import finding_document, latest_id, observation_document, observer
from sentinel.sinks.elasticsearch.estate import EstateReader, EstateScope
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.sinks.elasticsearch.templates import IndexNames
from sentinel.sinks.outbox import dumps
from sentinel.store import SqliteStore
from sentinel.web.auth import Authenticator, UserSettings
from sentinel.web.server import WebContext, add_web_routes

#: the city and its districts (slug, name in the departments)
SITES = {
    "city": "市",
    "hexi-district": "河西区",
    "dongcheng-district": "东城区",
    "xicheng-district": "西城区",
    "nanhu-district": "南湖区",
    "beishan-district": "北山区",
    "gaoxin-district": "高新区",
    "binjiang-district": "滨江区",
    "lingang-district": "临港区",
    "donghu-district": "东湖区",
    "wangjiang-district": "望江区",
    "qingshan-district": "青山区",
}
#: a district whose monitor stopped shipping three days ago: the view must show it silent, not clean
SILENT_SITE = "qingshan-district"
DEPARTMENTS = ["大数据管理局", "行政审批局", "教育局", "卫生健康局", "政务服务中心", "市场监管局"]
RULES = [
    "https_hsts_enabled",
    "http_csp_present",
    "tls_protocol_modern",
    "tls_cert_not_expiring_soon",
    "tls_cert_not_expired",
    "port_high_risk_closed",
    "port_undeclared_open",
    "service_banner_version_hidden",
    "dns_caa_present",
    "service_requires_authentication",
    "http_redirects_to_https",
]
STATUSES = [FindingStatus.OPEN] * 14 + [FindingStatus.ACKNOWLEDGED] * 2
STATUSES += [FindingStatus.RECTIFIED, FindingStatus.RESOLVED, FindingStatus.RESOLVED, FindingStatus.SUPPRESSED]
HOST = "127.0.0.1"
STALE_AFTER = timedelta(hours=24)
#: ages (days) where a finding changes figure: the SLA deadlines and the list's age filters
BOUNDARIES = (1, 3, 7, 30, 90)


@dataclass
class Estate:
    """What was loaded, and the figures the view must show (computed here, independently of the reader)."""

    registry: Registry
    findings: list[Finding]
    observations: list[Observation]
    site_of: dict[str, str]
    now: datetime
    documents: int = 0
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)

    def figures(self, policy: FindingsSettings) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for site in SITES:
            mine = [f for f in self.findings if f.site == site]
            active = [f for f in mine if f.status.is_active]
            out[site] = {
                "all": len(mine),
                "active": dict(Counter(f.severity.value for f in active)),
                "active_total": len(active),
                "systems_affected": len({f.system_id for f in active}),
                "overdue": sum(1 for f in active if is_overdue(f, policy, self.now)),
                "stale": sum(1 for f in active if f.last_seen < self.now - STALE_AFTER),
            }
        return out


def registry_yaml(systems: int, rng: random.Random) -> tuple[str, dict[str, str]]:
    """The city's registry (every district's systems too) and the site that monitors each system."""
    out, site_of = [], {}
    names = list(SITES)
    for i in range(systems):
        site = names[i % len(names)]
        tier = "city" if site == "city" else ("district" if i % 3 else "street")
        dept = SITES[site] + DEPARTMENTS[(i // len(names)) % len(DEPARTMENTS)]
        sid = f"{site.split('-')[0]}-{i:04d}"
        site_of[sid] = site
        out.append(
            {
                "id": sid,
                "name": f"{dept}业务系统{i:04d}",
                "owner": {"department": dept},
                "tier": tier,
                "mlps_level": rng.choice([2, 2, 3, 3, 3, 4]) if tier == "city" else rng.choice([2, 2, 3]),
                "endpoints": [{"host": f"10.{i // 250}.{i % 250}.{10 + i % 200}", "ports": [80, 443]}],
            }
        )
    return yaml.safe_dump({"scope": {"allow": ["10.0.0.0/8"]}, "systems": out}, allow_unicode=True), site_of


def build_estate(systems: int = 1354, seed: int = 14, now: datetime | None = None) -> Estate:
    """The estate: 0-4 findings of shipped rules per system (about 2 on average), most open, some taken on,
    rectified, resolved or accepted; first seen over 60 days (so some are overdue), a tenth not confirmed for two
    days (stale); the silent district's last records three days old. The city also probes from the Internet."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC).replace(microsecond=0)
    text, site_of = registry_yaml(systems, rng)
    registry = load_registry_text(text)
    rules = {r.id: r for r in load_rules([shipped_rules_dir()]) if r.id in RULES}
    findings: list[Finding] = []
    observations: list[Observation] = []
    for system in registry.systems:
        site = site_of[system.id]
        quiet = site == SILENT_SITE
        host = system.endpoints[0].host or system.id
        vantages = [Vantage.INTERNAL, Vantage.INTERNET] if site == "city" else [Vantage.INTERNAL]
        for vantage in vantages:
            latest = now - (timedelta(days=3) if quiet else timedelta(minutes=rng.uniform(0, 30)))
            observations.append(
                Observation(
                    "host", system.id, host, latest, "tcp_ports", data={"reachable": True}, site=site, vantage=vantage
                )
            )
        picked = rng.sample(sorted(rules), rng.choice([0, 1, 1, 2, 2, 3, 4]))
        for rule_id in picked:
            rule = rules[rule_id]
            vantage = vantages[-1] if rule_id.startswith("port_") else vantages[0]
            target = f"{host}:443" if rule_id.startswith("tls_") else f"https://{host}/"
            status = rng.choice(STATUSES)
            age = rng.uniform(3.1 if quiet else 0, 60)  # the silent site saw nothing new
            if any(abs(age - edge) < 0.05 for edge in BOUNDARIES):
                age += 0.1  # not within an hour of a deadline or age filter: figures stay put while a test runs
            first = now - timedelta(days=age)
            if quiet:
                last = now - timedelta(days=3, minutes=rng.uniform(0, 60))
            elif rng.random() < 0.1:
                last = now - timedelta(days=2, minutes=rng.uniform(0, 60))
            else:
                last = now - timedelta(minutes=rng.uniform(0, 50))
            last = max(last, first)
            findings.append(
                Finding(
                    id=fingerprint(rule_id, system.id, target, vantage),
                    rule_id=rule_id,
                    title=rule.title,
                    severity=rule.severity,
                    category=rule.category,
                    system_id=system.id,
                    target=target,
                    status=status,
                    first_seen=first,
                    last_seen=last,
                    occurrences=rng.randint(1, 400),
                    evidence={"probe": rule.observation[0], "host": host},
                    controls=rule.controls.flat(),
                    remediation=rule.remediation,
                    status_reason="工单 OPS-7" if status != FindingStatus.OPEN else None,
                    status_by="soc" if status != FindingStatus.OPEN else None,
                    resolved_at=last if status == FindingStatus.RESOLVED else None,
                    site=site,
                    vantage=vantage,
                )
            )
    return Estate(registry, findings, observations, site_of, now)


def ship(client: Elasticsearch, estate: Estate, prefix: str = "sentinel") -> int:
    """Bulk-load the estate as each site's instance would have shipped it: latest state by `latest_id` into the
    site's latest index, observations into its observations index. Returns how many documents."""
    host = observer()

    def actions() -> Iterator[dict[str, Any]]:
        for f in estate.findings:
            doc = finding_document(f, estate.registry.system(f.system_id), host)
            yield {"_index": IndexNames(prefix, f.site).latest, "_id": latest_id(f), "_source": doc}
        for o in estate.observations:
            body = dumps(observation_document(o, estate.registry.system(o.system_id), host))
            index = IndexNames(prefix, o.site or "default").observations
            yield {"_op_type": "create", "_index": index, "_id": content_id("observations", body), "_source": body}

    ok, errors = helpers.bulk(client, actions(), chunk_size=1000, refresh=True, raise_on_error=False)
    if isinstance(errors, list) and errors:
        raise RuntimeError(f"{len(errors)} documents refused, e.g. {errors[:1]}")
    estate.documents = ok
    return ok


def users() -> list[UserSettings]:
    """The city's operator (every site), a district's operator (hexi only) and a district owner."""
    return [
        UserSettings.model_validate({"name": "alice", "role": "operator", "token": "city-operator"}),
        UserSettings.model_validate(
            {"name": "dora", "role": "operator", "token": "hexi-operator", "sites": ["hexi-district"]}
        ),
        UserSettings.model_validate(
            {
                "name": "olga",
                "role": "owner",
                "department": "河西区行政审批局",
                "token": "hexi-owner",
                "sites": ["hexi-district"],
            }
        ),
    ]


def web_app(store: SqliteStore, registry: Registry, reader: EstateReader) -> web.Application:
    """The city's web view with the estate pages, for `users()`."""
    app = web.Application()
    add_web_routes(app, WebContext(store, registry, Authenticator(users()), estate=reader))
    return app


@contextlib.contextmanager
def double_process() -> Iterator[str]:
    """The Elasticsearch double in its own process (a cluster does not share the web view's interpreter)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.es_double", "0"], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "Elasticsearch double at http://127.0.0.1:PORT (Ctrl-C stops)"
        yield line.split(" at ", 1)[1].split()[0]
    finally:
        proc.terminate()
        proc.wait(10)


def fetch(url: str, token: str) -> tuple[float, int, int]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = resp.read()
        status = resp.status
    return time.perf_counter() - started, len(body), status


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(round(share * (len(ordered) - 1)), len(ordered) - 1)]


def measure(base: str, repeat: int) -> list[tuple[str, str, float, float, float]]:
    pages = [
        ("city", "city-operator", "/estate"),
        ("city", "city-operator", "/estate/findings"),
        ("city", "city-operator", "/estate/findings?site=hexi-district"),
        ("city", "city-operator", "/estate/findings?page=20"),
        ("city", "city-operator", "/estate/findings?severity=high&status=all&q=tls"),
        ("city", "city-operator", "/api/estate"),
        ("city", "city-operator", "/api/estate/findings?limit=500"),
        ("district", "hexi-operator", "/estate"),
        ("district", "hexi-operator", "/estate/findings"),
        ("owner", "hexi-owner", "/estate/findings"),
    ]
    rows = []
    print(f"{'user':<9} {'page':<52} {'p50 ms':>8} {'p95 ms':>8} {'KB':>7}")
    for who, token, path in pages:
        fetch(base + path, token)  # warm: templates compiled, connections open
        times, size = [], 0
        for _ in range(repeat):
            took, size, status = fetch(base + path, token)
            assert status == 200, (path, status)
            times.append(took * 1000)
        p50, p95 = statistics.median(times), percentile(times, 0.95)
        rows.append((who, path, p50, p95, size / 1024))
        print(f"{who:<9} {path:<52} {p50:>8.1f} {p95:>8.1f} {size / 1024:>7.1f}")
    return rows


def measure_reader(reader: EstateReader, repeat: int) -> None:
    """The same reads without the web view: what the cluster and the client take of each page."""
    scope, hexi = EstateScope(), EstateScope(sites=("hexi-district",))
    calls: list[tuple[str, str, Callable[[], object]]] = [
        ("city", "summary (3 searches)", lambda: reader.summary(scope)),
        ("city", "findings page 1", lambda: reader.findings(scope)),
        ("city", "findings page 20", lambda: reader.findings(scope, page=20)),
        ("district", "summary (3 searches)", lambda: reader.summary(hexi)),
        ("district", "findings page 1", lambda: reader.findings(hexi)),
    ]
    print(f"{'reader':<9} {'call':<52} {'p50 ms':>8} {'p95 ms':>8}")
    for who, name, run in calls:
        run()
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            run()
            times.append((time.perf_counter() - started) * 1000)
        print(f"{who:<9} {name:<52} {statistics.median(times):>8.1f} {percentile(times, 0.95):>8.1f}")


def main() -> None:
    from tests.support.web_site import serving

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", type=int, default=1354)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--es-url", help="a real cluster instead of the double (SENTINEL_TEST_ES_* credentials)")
    args = parser.parse_args()
    started = time.perf_counter()
    estate = build_estate(args.systems)
    print(
        f"estate: {len(estate.registry.systems)} systems, {len(SITES)} sites, {len(estate.findings)} findings, "
        f"{len(estate.observations)} observations (built in {time.perf_counter() - started:.1f} s)"
    )
    with contextlib.ExitStack() as stack:
        prefix = f"bench-{uuid.uuid4().hex[:8]}" if args.es_url else "sentinel"
        url = args.es_url or stack.enter_context(double_process())
        options: dict[str, Any] = {"url": url, "index_prefix": prefix}
        for name in ("api_key", "username", "password", "ca_file") if args.es_url else ():
            if os.environ.get(f"SENTINEL_TEST_ES_{name.upper()}"):
                options[name] = os.environ[f"SENTINEL_TEST_ES_{name.upper()}"]
        es = ElasticsearchSettings.model_validate(options)
        client = build_client(es)
        stack.callback(client.close)
        if args.es_url:  # by name: clusters refuse wildcard deletes (action.destructive_requires_name)
            stack.callback(lambda: client.indices.delete(index=[IndexNames(prefix, s).latest for s in SITES]))
            for site in SITES:
                stack.callback(client.indices.delete_data_stream, name=IndexNames(prefix, site).observations)
        started = time.perf_counter()
        ship(client, estate, prefix)
        print(f"shipped {estate.documents} documents to {url} in {time.perf_counter() - started:.1f} s")
        reader = EstateReader(es, sites=list(SITES))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        store = SqliteStore(tmp / "city.db")
        stack.callback(store.close)
        base = stack.enter_context(serving(web_app(store, estate.registry, reader), HOST))
        measure(base, args.repeat)
        measure_reader(reader, args.repeat)


if __name__ == "__main__":
    main()
