"""`/metrics`: the store read at scrape time, as metric families.

`StoreExporter.render()` is what `sentinel serve` answers with (fast text exposition, cached until the store
changes). `StoreCollector` is the same families as a prometheus_client custom collector, registered on its own
`CollectorRegistry` by `build_registry()` (never the process-global one), for code that wants prometheus_client's
exposition or parsers; the two give identical samples (tests/test_exporter_collector.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from sentinel.exporter.family import Family, render_families
from sentinel.exporter.outbox import outbox_families
from sentinel.exporter.reader import StoreSnapshot, read_snapshot
from sentinel.models import DEFAULT_OBSERVER
from sentinel.registry.models import Registry
from sentinel.store import SqliteStore

UNKNOWN = "unknown"

#: Families read at every scrape from other stages (the Elasticsearch outbox, the compliance assessment).
FamilySource = Callable[[SqliteStore], Iterable[Family]]


#: probes whose failure means the system is down (a failed DNS or banner check does not)
REACHABILITY_PROBES = frozenset({"tcp_ports", "icmp", "http"})


@dataclass(frozen=True, slots=True)
class SystemLabels:
    """Registry facts used as labels: each is fixed per system, so they add no cardinality."""

    name: str
    tier: str
    department: str
    mlps_level: str
    cii: str


def system_labels(registry: Registry | None) -> dict[str, SystemLabels]:
    if registry is None:
        return {}
    return {
        s.id: SystemLabels(s.name, s.tier.value, s.owner.department, str(s.mlps_level), "true" if s.cii else "false")
        for s in registry.systems
    }


def _placement(labels: Mapping[str, SystemLabels], system_id: str) -> tuple[str, str]:
    found = labels.get(system_id)
    return (found.tier, found.department) if found else (UNKNOWN, UNKNOWN)


def snapshot_families(snap: StoreSnapshot, labels: Mapping[str, SystemLabels]) -> Iterator[Family]:
    info = Family.gauge(
        "sentinel_system_info",
        "Registered system (value 1): its tier, owning department, MLPS level and CII flag.",
        labels=["system", "name", "tier", "department", "mlps_level", "cii"],
    )
    for sid, lab in labels.items():
        info.add([sid, lab.name, lab.tier, lab.department, lab.mlps_level, lab.cii], 1)
    yield info

    success = Family.gauge(
        "sentinel_probe_success",
        "1 if the probe could observe this system: none of its latest observations is an error observation "
        "(a closed port or a missing header is an observation, not a probe failure).",
        labels=["system", "probe"],
    )
    duration = Family.gauge(
        "sentinel_probe_duration_seconds",
        "Slowest answer among the latest observations of this probe for this system.",
        labels=["system", "probe"],
    )
    up_by_system: dict[str, bool] = {}
    for p in snap.probes:
        success.add([p.system_id, p.probe], 1.0 if p.success else 0.0)
        if p.duration_seconds is not None:
            duration.add([p.system_id, p.probe], p.duration_seconds)
        if p.probe in REACHABILITY_PROBES:
            up_by_system[p.system_id] = up_by_system.get(p.system_id, True) and p.reachable
    yield success
    yield duration

    up = Family.gauge(
        "sentinel_system_up",
        "1 if the system answered its reachability probes (ports, ICMP, HTTP) in their latest observations, else 0.",
        labels=["system", "tier", "department"],
    )
    for sid, ok in up_by_system.items():
        up.add([sid, *_placement(labels, sid)], 1.0 if ok else 0.0)
    yield up

    certs = Family.gauge(
        "sentinel_certificate_expiry_timestamp_seconds",
        "Earliest certificate expiry (notAfter) among the system's TLS endpoints, as a Unix timestamp.",
        labels=["system"],
    )
    for sid, ts in snap.cert_expiry.items():
        certs.add([sid], ts)
    yield certs

    findings = Family.gauge(
        "sentinel_findings_open",
        "Active findings (status open or acknowledged) by system, severity and category.",
        labels=["system", "tier", "department", "severity", "category", "status"],
    )
    for f in snap.findings:
        findings.add([f.system_id, *_placement(labels, f.system_id), f.severity, f.category, f.status], f.count)
    yield findings

    yield from _sweep_families(snap)


def estate_families(snap: StoreSnapshot, labels: Mapping[str, SystemLabels]) -> Iterator[Family]:
    """The estate at a glance, by tier only: what an anonymous scraper may see when web users are configured
    (no system, department or category labels)."""
    systems = Family.gauge("sentinel_estate_systems", "Registered systems by tier.", labels=["tier"])
    for tier, n in sorted(Counter(lab.tier for lab in labels.values()).items()):
        systems.add([tier], n)
    yield systems
    up_by_system: dict[str, bool] = {}
    for p in snap.probes:
        if p.probe in REACHABILITY_PROBES:
            up_by_system[p.system_id] = up_by_system.get(p.system_id, True) and p.reachable
    up = Family.gauge(
        "sentinel_estate_systems_up", "Systems that answered their reachability probes, by tier.", labels=["tier"]
    )
    down = Family.gauge(
        "sentinel_estate_systems_down", "Systems that did not answer a reachability probe, by tier.", labels=["tier"]
    )
    ups: Counter[str] = Counter()
    downs: Counter[str] = Counter()
    for sid, ok in up_by_system.items():
        (ups if ok else downs)[_placement(labels, sid)[0]] += 1
    for tier in sorted(set(ups) | set(downs)):
        up.add([tier], ups[tier])
        down.add([tier], downs[tier])
    yield up
    yield down
    open_ = Family.gauge(
        "sentinel_estate_findings_open",
        "Active findings (open, acknowledged, rectified) by tier and severity.",
        labels=["tier", "severity"],
    )
    counts: Counter[tuple[str, str]] = Counter()
    for f in snap.findings:
        counts[(_placement(labels, f.system_id)[0], f.severity)] += f.count
    for (tier, severity), n in sorted(counts.items()):
        open_.add([tier, severity], n)
    yield open_


def sweep_progress_families(store: SqliteStore) -> Iterator[Family]:
    """Sweeps running now (`sentinel run` slices, `sentinel scan`): jobs planned and done, findings seen so far,
    as their runners report them to the store. Read at every scrape (a dead sweep stops counting after 5 min)."""
    running = store.running_sweeps(datetime.now(UTC))
    gauges = [
        ("sentinel_sweeps_running", "Sweeps in progress.", float(len(running))),
        (
            "sentinel_sweep_jobs_planned",
            "Jobs planned by the sweeps in progress.",
            float(sum(r["planned_jobs"] for r in running)),
        ),
        (
            "sentinel_sweep_jobs_done",
            "Jobs finished so far by the sweeps in progress.",
            float(sum(r["done_jobs"] for r in running)),
        ),
        (
            "sentinel_sweep_findings_seen",
            "Problems the stateless rules saw so far in the sweeps in progress (final findings come at the end).",
            float(sum(r["findings_seen"] for r in running)),
        ),
    ]
    for name, doc, value in gauges:
        family = Family.gauge(name, doc)
        family.add([], value)
        yield family


def _sweep_families(snap: StoreSnapshot) -> Iterator[Family]:
    s = snap.sweeps
    started = Family.counter("sentinel_sweeps_started", "Sweeps started (audit records written).")
    started.add([], s.started_total)
    yield started
    completed = Family.counter("sentinel_sweeps_completed", "Sweeps that finished and recorded their results.")
    completed.add([], s.finished_total)
    yield completed
    gauges: list[tuple[str, str, float | None]] = [
        ("sentinel_sweep_last_start_timestamp_seconds", "When the most recent sweep started.", s.last_started),
        ("sentinel_sweep_last_success_timestamp_seconds", "When the last finished sweep finished.", s.last_success),
        ("sentinel_sweep_duration_seconds", "Wall time of the last finished sweep.", s.last_duration_seconds),
    ]
    for name, doc, value in gauges:
        if value is not None:
            family = Family.gauge(name, doc)
            family.add([], value)
            yield family
    if s.last_observations is not None:
        family = Family.gauge(
            "sentinel_sweep_observations", "Observations made by the last finished sweep, by status.", labels=["status"]
        )
        errors = s.last_errors or 0
        family.add(["ok"], max(s.last_observations - errors, 0))
        family.add(["error"], errors)
        yield family


def capture_families(snap: StoreSnapshot) -> Iterator[Family]:
    """Live capture health: a window the kernel dropped packets from is never presented as clean traffic."""
    if not snap.captures:
        return
    received = Family.gauge(
        "sentinel_capture_window_packets_received",
        "Packets the capture filter accepted in the latest live-capture window (dropped ones included).",
        labels=["interface"],
    )
    dropped = Family.gauge(
        "sentinel_capture_window_packets_dropped",
        "Packets the kernel dropped in the latest live-capture window because the capture ring was full.",
        labels=["interface"],
    )
    when = Family.gauge(
        "sentinel_capture_window_timestamp_seconds", "When the latest live-capture window ended.", labels=["interface"]
    )
    for c in snap.captures:
        received.add([c.interface], c.received)
        dropped.add([c.interface], c.dropped)
        if c.observed_at is not None:
            when.add([c.interface], c.observed_at)
    yield received
    yield dropped
    yield when


def all_families(snap: StoreSnapshot, labels: Mapping[str, SystemLabels]) -> Iterator[Family]:
    yield from snapshot_families(snap, labels)
    yield from estate_families(snap, labels)
    yield from capture_families(snap)


def public_families(snap: StoreSnapshot, labels: Mapping[str, SystemLabels]) -> Iterator[Family]:
    yield from estate_families(snap, labels)
    yield from _sweep_families(snap)


class StoreExporter:
    """Reads the store once per scrape and renders the exposition.

    The store's own families are re-read only when the store changed (another process committing bumps
    `PRAGMA data_version`; this connection writing bumps `total_changes`), so frequent scrapes between sweeps cost
    next to nothing. `live` sources (the outbox, whose age moves with the clock) are read at every scrape. The SQLite
    connection is shared, so scrapes are serialised: everything reading `store` holds `lock`.
    """

    def __init__(
        self,
        store: SqliteStore,
        registry: Registry | None = None,
        live: Iterable[FamilySource] = (outbox_families,),
    ) -> None:
        self.store = store
        self._labels = system_labels(registry)
        self._live = list(live)
        self.lock = threading.Lock()
        self._cached: dict[bool, tuple[tuple[int, int], bytes]] = {}

    def _version(self) -> tuple[int, int]:
        return self.store.data_version()

    def observer_labels(self) -> tuple[tuple[str, str], ...]:
        """`site` and `vantage` on every family: instances at several sites and vantages feed one Prometheus. They
        are the store's (whose observations it holds), the defaults until an instance has recorded them."""
        who = self.store.identity() or DEFAULT_OBSERVER
        return (("site", who.site), ("vantage", who.vantage.value))

    def families(self) -> list[Family]:
        with self.lock:
            const = self.observer_labels()
            families = list(all_families(read_snapshot(self.store), self._labels))
            every = families + self._live_families() + list(sweep_progress_families(self.store))
            return [f.with_labels(const) for f in every]

    def _live_families(self) -> list[Family]:
        return [family for source in self._live for family in source(self.store)]

    def render(self, use_cache: bool = True, detail: bool = True) -> bytes:
        """The exposition; `detail=False`: estate-level families only (no system or department labels)."""
        with self.lock:
            version = self._version()
            const = self.observer_labels()
            cached = self._cached.get(detail)
            if use_cache and cached is not None and cached[0] == version:
                body = cached[1]
            else:
                source = all_families if detail else public_families
                body = render_families(source(read_snapshot(self.store), self._labels), const)
                self._cached[detail] = (version, body)  # the version read before: a commit during the read re-renders
            live = self._live_families() if detail else []
            return body + render_families([*live, *sweep_progress_families(self.store)], const)


class StoreCollector(Collector):
    """The prometheus_client view of the same families, for a `CollectorRegistry`."""

    def __init__(self, exporter: StoreExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        return (family.to_metric() for family in self._exporter.families())


def build_registry(exporter: StoreExporter) -> CollectorRegistry:
    """A fresh registry holding only Sentinel's store collector (never the process-global one)."""
    out = CollectorRegistry(auto_describe=False)
    out.register(StoreCollector(exporter))
    return out
