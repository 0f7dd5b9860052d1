"""`/metrics` render time and size for a synthetic estate of 1,354 systems (target: under 100 ms).

    python -m bench.metrics_render [--systems N] [--rounds N]

The store is filled the way a sweep fills it (latest observations per port, host, URL and certificate, findings,
sweep records), then the exporter renders the exposition the way `sentinel serve` does for each scrape.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import generate_latest

from sentinel.exporter.collector import StoreExporter, build_registry
from sentinel.models import Finding, FindingStatus, Observation, ObservationStatus, Severity
from sentinel.registry.models import Endpoint, Owner, Registry, System, Tier
from sentinel.registry.scope import Scope
from sentinel.store import SqliteStore

PORTS = (21, 23, 135, 139, 445, 1433, 3306, 3389, 5432, 6379, 9200, 11211, 27017, 2375, 5900)
TIERS = (Tier.CITY, Tier.DISTRICT, Tier.STREET)
CATEGORIES = ("tls", "exposure", "web")


def synthetic_registry(systems: int) -> Registry:
    built = []
    for i in range(systems):
        ip = f"10.{i // 250}.{i % 250}.10"
        built.append(
            System(
                id=f"sys-{i:04d}",
                name=f"系统 {i}",
                owner=Owner(department=f"部门 {i % 40}"),
                tier=TIERS[i % 3],
                mlps_level=2 + i % 2,
                endpoints=[Endpoint(url=f"https://{ip}/"), Endpoint(host=ip, ports=[22])],
            )
        )
    return Registry(scope=Scope(allow=["10.0.0.0/8"]), systems=tuple(built))


def fill_store(store: SqliteStore, registry: Registry, now: datetime) -> None:
    observations: list[Observation] = []
    findings: list[Finding] = []
    for i, system in enumerate(registry.systems):
        ip = system.endpoints[1].hostname
        down = i % 17 == 0
        for port in (*PORTS, 22, 443):
            state = "open" if port in (22, 443) and not down else "closed"
            observations.append(
                Observation(
                    "port",
                    system.id,
                    f"{ip}:{port}/tcp",
                    now,
                    "tcp_ports",
                    data={"port": port, "state": state, "declared": port in (22, 443), "rtt_ms": 0.4 + i % 7},
                )
            )
        observations.append(Observation("host", system.id, ip, now, "tcp_ports", data={"reachable": not down}))
        if down:
            observations.append(
                Observation(
                    "http",
                    system.id,
                    f"https://{ip}/",
                    now,
                    "http",
                    ObservationStatus.ERROR,
                    {"reachable": False, "error_kind": "connect"},
                    "connect failed",
                )
            )
        else:
            observations.append(
                Observation(
                    "http",
                    system.id,
                    f"https://{ip}/",
                    now,
                    "http",
                    data={"reachable": True, "status_code": 200, "latency_ms": 20.0 + i % 50},
                )
            )
            not_after = now + timedelta(days=(i % 400) - 20)
            observations.append(
                Observation("tls", system.id, f"{ip}:443", now, "tls", data={"cert.not_after": not_after.isoformat()})
            )
        for n in range(i % 3):
            sev = list(Severity)[(i + n) % 5]
            findings.append(
                Finding(
                    id=f"{i:06d}{n}",
                    rule_id=f"rule_{n}",
                    title="synthetic",
                    severity=sev,
                    category=CATEGORIES[n],
                    system_id=system.id,
                    target=f"{ip}:443",
                    status=FindingStatus.OPEN if n else FindingStatus.ACKNOWLEDGED,
                    first_seen=now,
                    last_seen=now,
                    occurrences=1,
                )
            )
    store.save_observations(observations)
    store.save_findings(findings)
    for k in range(5):
        sweep = store.start_sweep(now - timedelta(hours=5 - k), "bench", "x", len(registry.systems))
        store.finish_sweep(
            sweep, now - timedelta(hours=5 - k) + timedelta(seconds=58), {"observations": 9, "errors": 1}
        )


def time_compliance(store: SqliteStore, registry: Registry) -> float:
    from sentinel.engine.loader import load_rules
    from sentinel.exporter.compliance import ComplianceFamilies
    from sentinel.paths import shipped_rules_dir

    source = ComplianceFamilies(store.path, registry, load_rules([shipped_rules_dir()]))
    t0 = time.perf_counter()
    source.refresh(store)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=1354)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--with-compliance", action="store_true", help="also time one background compliance assessment (slow)"
    )
    args = parser.parse_args()
    registry = synthetic_registry(args.systems)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "bench.db")
        t0 = time.perf_counter()
        fill_store(store, registry, datetime.now(UTC))
        fill = time.perf_counter() - t0
        exporter = StoreExporter(store, registry)
        times: list[float] = []
        body = b""
        for _ in range(max(args.rounds, 1)):
            t0 = time.perf_counter()
            body = exporter.render(use_cache=False)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        exporter.render()
        exporter.render()
        cached_ms = (time.perf_counter() - t0) * 1000
        generic: list[float] = []
        for _ in range(3):
            t0 = time.perf_counter()
            generate_latest(build_registry(exporter))
            generic.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        zipped = gzip.compress(body, compresslevel=1)
        gzip_ms = (time.perf_counter() - t0) * 1000
        samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        rows = store.connection.execute("SELECT COUNT(*) FROM observations_latest").fetchone()[0]
        compliance_s = time_compliance(store, registry) if args.with_compliance else None
        store.close()
    print(f"estate: {args.systems} systems, {rows} stored observations (filled in {fill:.1f} s)")
    print(
        f"/metrics render: median {statistics.median(times) * 1000:.1f} ms, min {min(times) * 1000:.1f} ms "
        f"over {len(times)} rounds (target < 100 ms)"
    )
    print(f"unchanged store (cached rendering): {cached_ms:.2f} ms")
    print(f"same families through prometheus_client generate_latest: median {statistics.median(generic) * 1000:.1f} ms")
    print(f"size: {samples} samples, {len(body) / 1e6:.2f} MB")
    print(f"gzip level 1 (as served): {len(zipped) / 1e3:.0f} kB in {gzip_ms:.1f} ms")
    if compliance_s is not None:
        print(f"compliance assessment (background thread, not per scrape): {compliance_s:.1f} s")


if __name__ == "__main__":
    main()
