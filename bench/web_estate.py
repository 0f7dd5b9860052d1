"""The web view at estate scale: 1,354 systems, 30,000 findings, a week of reachability readings.

    python -m bench.web_estate [--systems 1354] [--findings 30000] [--repeat 5] [--keep DIR] [--screenshots DIR]

The estate is generated through the store and tracker APIs (no network): findings of shipped rules made by the
tracker over 14 simulated days (some resolved, acknowledged, rectified, stale), every system's reachability
observed every 3 hours for 7 days, TLS observations with certificates near expiry. The web application then
serves it on loopback (aiohttp, real HTTP), and each page is fetched `--repeat` times as an operator and as a
department owner: the median time and the body size are printed. `--screenshots DIR` also opens the pages in
headless Chromium (Debian's, driven by Playwright) and saves full-page PNGs.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from aiohttp import web

from sentinel.engine.loader import load_rules
from sentinel.engine.ruleset import Verdict
from sentinel.findings.lifecycle import LifecycleEvent
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Observation, ObservationStatus
from sentinel.paths import shipped_rules_dir
from sentinel.registry.loader import load_registry
from sentinel.registry.models import Registry
from sentinel.store import SqliteStore
from sentinel.web.auth import Authenticator, UserSettings
from sentinel.web.server import WebContext, add_web_routes

HOST = "127.0.0.1"
CITY = [
    "大数据管理局",
    "公安局",
    "教育局",
    "卫生健康委",
    "人社局",
    "政务服务中心",
    "住建局",
    "交通运输局",
    "生态环境局",
]
DISTRICTS = ["东城区", "西城区", "南湖区", "北山区", "高新区", "滨江区", "临港区", "东湖区", "望江区", "青山区"]
DISTRICT_DEPTS = ["行政审批局", "教育局", "卫生健康局", "政务服务中心", "市场监管局"]
STREETS = [f"{d}{n}街道办事处" for d in DISTRICTS for n in ("东湖", "西关", "南门", "北岭", "新城", "江南")]
#: (rule id, target shape, evidence) of the findings the estate carries; most are the common web and TLS ones
RULES = [
    ("https_hsts_enabled", "https://{host}/", {"hsts.present": False}),
    ("http_csp_present", "https://{host}/", {"headers.csp": None}),
    ("http_nosniff_present", "https://{host}/", {}),
    ("http_frame_protection_present", "https://{host}/", {}),
    ("http_no_version_disclosure", "https://{host}/", {"server": "nginx/1.18.0"}),
    ("http_redirects_to_https", "http://{host}/", {"status_code": 200}),
    ("tls_protocol_modern", "{host}:443", {"tls.versions_offered": ["TLSv1", "TLSv1.1", "TLSv1.2"]}),
    (
        "tls_cert_not_expiring_soon",
        "{host}:443",
        {
            "cert.not_after": "2026-12-10T00:00:00+00:00",
            "cert.subject": "CN=政务服务网,O=六合市大数据管理局",
            "cert.days_to_expiry": 9.5,
            "cert.issuer": "CN=GDCA TrustAUTH R5",
        },
    ),
    ("port_high_risk_closed", "{host}:3389/tcp", {"port": 3389, "state": "open"}),
    ("port_undeclared_open", "{host}:8080/tcp", {"port": 8080}),
    ("service_banner_version_hidden", "{host}:22/tcp", {"banner": "SSH-2.0-OpenSSH_7.4"}),
    ("dns_caa_present", "{host}", {}),
    (
        "web_content_changed",
        "https://{host}/",
        {
            "page.title": "六合市人民政府门户网站",
            "change.diff": ["--- before", "+++ now", "@@ -1,2 +1,2 @@", " 欢迎访问", "-政务公开", "+六合彩 澳门赌场"],
        },
    ),
    (
        "web_no_hidden_gambling_adult_links",
        "https://{host}/",
        {"links.hidden_keywords": ["六合彩", "博彩"], "final_url": "https://{host}/"},
    ),
    ("service_requires_authentication", "{host}:6379/tcp", {"service": "redis", "auth": False}),
]


def registry_yaml(n: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    systems = []
    for i in range(n):
        share = i / n
        if share < 0.12:
            tier, dept = "city", "市" + CITY[i % len(CITY)]
        elif share < 0.5:
            tier, dept = "district", DISTRICTS[i % len(DISTRICTS)] + DISTRICT_DEPTS[(i // 10) % len(DISTRICT_DEPTS)]
        else:
            tier, dept = "street", STREETS[i % len(STREETS)]
        host = f"10.{i // 250}.{i % 250}.{10 + i % 200}"
        systems.append(
            {
                "id": f"sys-{i:04d}",
                "name": f"{dept}业务系统{i:04d}",
                "owner": {"department": dept, "email": f"ops{i % 97}@example.gov.cn"},
                "tier": tier,
                "mlps_level": rng.choice([2, 2, 3, 3, 3, 4]) if tier == "city" else rng.choice([2, 2, 3]),
                "endpoints": [{"host": host, "ports": [80, 443]}],
            }
        )
    return {"scope": {"allow": ["10.0.0.0/8"]}, "systems": systems}


def build(folder: Path, systems: int, findings: int, seed: int = 13) -> tuple[Registry, Path]:
    reg_path = folder / "registry.yaml"
    reg_path.write_text(yaml.safe_dump(registry_yaml(systems, seed), allow_unicode=True), encoding="utf-8")
    registry = load_registry(reg_path)
    db = folder / "sentinel.db"
    store = SqliteStore(db)
    tracker = FindingTracker(store)
    rules = {r.id: r for r in load_rules([shipped_rules_dir()])}
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hosts = {s.id: s.endpoints[0].host for s in registry.systems}
    ids = list(hosts)
    # Which findings exist: `findings` distinct (rule, system, variant) triples (a variant is another port or
    # page of the same system), each first seen on one of 14 days.
    pairs = sorted(
        {(rng.randrange(len(RULES)), rng.randrange(len(ids)), rng.randrange(3)) for _ in range(findings * 2)}
    )
    rng.shuffle(pairs)
    pairs = pairs[:findings]
    by_day: dict[int, list[Verdict]] = {}
    for k, (r, sidx, variant) in enumerate(pairs):
        rule_id, shape, evidence = RULES[r]
        sid = ids[sidx]
        target = shape.format(host=hosts[sid]) + ("" if not variant else f"#{variant}")
        ev = {key: (v.format(host=hosts[sid]) if isinstance(v, str) else v) for key, v in evidence.items()}
        day = 13 - min(int(rng.expovariate(0.25)), 13) if k % 10 else 0  # most are recent, a tenth are old
        by_day.setdefault(day, []).append(Verdict(rules[rule_id], sid, target, True, ev))
    seen: list[Verdict] = []
    for day in range(14):
        at = now - timedelta(days=13 - day)
        seen.extend(by_day.get(day, []))
        cleared = [Verdict(v.rule, v.system_id, v.target, False) for v in seen[: len(seen) // 25]] if day > 3 else []
        tracker.apply([*seen[len(cleared) :], *cleared], at)
        seen = seen[len(cleared) :]
    active = store.list_findings(statuses=None)
    for f in rng.sample(active, min(len(active), findings // 10)):
        if f.status.value == "open":
            tracker.act(f, LifecycleEvent.ACKNOWLEDGE, "alice", "工单 OPS-1", now)
    for f in rng.sample(active, min(len(active), findings // 50)):
        if f.status.is_active:
            tracker.rectify(f, "bob", "已升级中间件并重启", now, now + timedelta(days=3))
    # Reachability every 3 hours for 7 days (a few systems flaky), and the latest TLS reading of each system.
    flaky = set(rng.sample(ids, len(ids) // 30))
    for h in range(0, 7 * 24, 3):
        at = now - timedelta(hours=7 * 24 - h)
        batch = [
            Observation(
                "host", sid, hosts[sid], at, "tcp_ports", data={"reachable": not (sid in flaky and rng.random() < 0.4)}
            )
            for sid in ids
        ]
        batch += [
            Observation("http", sid, f"https://{hosts[sid]}/", at, "http", data={"reachable": True, "status_code": 200})
            for sid in ids
        ]
        store.save_observations(batch)
    tls = [
        Observation(
            "tls",
            sid,
            f"{hosts[sid]}:443",
            now,
            "tls",
            status=ObservationStatus.OK,
            data={"cert.days_to_expiry": rng.uniform(-3, 400), "cert.not_after": "2027-01-01T00:00:00+00:00"},
        )
        for sid in ids
    ]
    store.save_observations(tls)
    store.close()
    return registry, db


USERS = [
    UserSettings.model_validate({"name": "alice", "role": "operator", "token": "bench-operator"}),
    UserSettings.model_validate(
        {"name": "bob", "role": "owner", "department": "东城区行政审批局", "token": "bench-owner"}
    ),
]


@contextmanager
def serve(registry: Registry, db: Path) -> Iterator[str]:
    store = SqliteStore(db)
    app = web.Application()
    add_web_routes(app, WebContext(store, registry, Authenticator(USERS)))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, HOST, 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        store.close()


def fetch(url: str, token: str) -> tuple[float, int, int]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = resp.read()
        status = resp.status
    return time.perf_counter() - started, len(body), status


def measure(base: str, registry: Registry, repeat: int) -> None:
    busiest = registry.systems[0].id
    pages = [
        ("operator", "bench-operator", "/"),
        ("operator", "bench-operator", "/alerts"),
        ("operator", "bench-operator", "/alerts?page=40"),
        ("operator", "bench-operator", "/alerts?severity=high&tier=district&age=7d&sort=oldest"),
        ("operator", "bench-operator", "/alerts?q=3389&status=all"),
        ("operator", "bench-operator", "/overdue"),
        ("operator", "bench-operator", f"/systems/{busiest}"),
        ("operator", "bench-operator", "/api/overview"),
        ("operator", "bench-operator", "/api/findings?limit=500"),
        ("owner", "bench-owner", "/"),
        ("owner", "bench-owner", "/alerts"),
    ]
    print(f"{'user':<9} {'page':<58} {'median ms':>9} {'max ms':>8} {'KB':>8}")
    for who, token, path in pages:
        times, size = [], 0
        for _ in range(repeat):
            took, size, status = fetch(base + path, token)
            assert status == 200, (path, status)
            times.append(took * 1000)
        print(f"{who:<9} {path:<58} {statistics.median(times):>9.1f} {max(times):>8.1f} {size / 1024:>8.1f}")


def screenshots(base: str, folder: Path, registry: Registry) -> None:
    import shutil

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    folder.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"], headless=True)
        try:
            for who, token, shots in (
                (
                    "operator",
                    "bench-operator",
                    [
                        ("estate-overview", "/"),
                        ("estate-alerts", "/alerts?lang=en"),
                        ("estate-system", f"/systems/{registry.systems[0].id}"),
                        ("estate-overdue", "/overdue"),
                    ],
                ),
                ("owner", "bench-owner", [("estate-owner-alerts", "/alerts")]),
            ):
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(f"{base}/login")
                page.fill("#token", token)
                page.click("#login")
                page.wait_for_url(f"{base}/")
                for name, path in shots:
                    page.goto(base + path)
                    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
                    print(f"screenshot ({who}) {path} -> {folder / (name + '.png')}")
                page.close()
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", type=int, default=1354)
    parser.add_argument("--findings", type=int, default=30000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the estate in this folder and keep it")
    parser.add_argument("--screenshots", type=Path, help="also save full-page screenshots here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        registry, db = build(folder, args.systems, args.findings)
        store = SqliteStore(db)
        total = store.connection.execute("SELECT COUNT(*) FROM findings").fetchone()[0]
        store.close()
        print(
            f"estate: {len(registry.systems)} systems, {total} findings, built in {time.perf_counter() - started:.1f} s"
        )
        with serve(registry, db) as base:
            measure(base, registry, args.repeat)
            if args.screenshots:
                screenshots(base, args.screenshots, registry)


if __name__ == "__main__":
    main()
