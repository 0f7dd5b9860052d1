"""Rule evaluation throughput: synthetic observations for 1,354 systems through 200 loaded rules.

Run: python -m bench.rules_eval [--systems 1354] [--rules 200] [--sweeps 3]

Prints observations per second and per-sweep evaluation time for the anomaly engine (stateless and
stateful rules, in-memory state, one core), and for the stateless RuleSet alone. Rules are indexed by
the observation kind they read, so each observation meets only the rules for its kind. For the anomaly
engine it also prints every sweep's CPU time with the part spent in Python's garbage collector, since a
full collection (every few sweeps, over the whole heap) is a large share of a sweep.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sentinel.engine.anomaly import AnomalyEngine
from sentinel.engine.loader import load_rules
from sentinel.engine.rule import Rule
from sentinel.engine.ruleset import RuleSet
from sentinel.engine.state import StoreState
from sentinel.models import Observation, ObservationStatus
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Endpoint, Owner, Registry, System, Tier
from sentinel.registry.scope import Scope
from sentinel.store import SqliteStore

PORTS = (21, 22, 23, 80, 135, 139, 443, 445, 1433, 3306, 3389, 5432, 6379, 8080, 9200, 27017)
HIGH_RISK = {21, 23, 135, 139, 445, 1433, 3306, 3389, 5432, 6379, 9200, 27017}

# Synthetic rule templates: (kind, field, op, values) — thresholds vary so the rules are distinct.
TEMPLATES: list[tuple[str, str, str, list[Any]]] = [
    ("http", "latency_ms", "gt", [500, 800, 1200, 2000, 5000, 8000]),
    ("http", "status_code", "ge", [400, 500]),
    ("tls", "cert.days_to_expiry", "lt", [7, 14, 45, 60, 90]),
    ("tls", "cert.key_bits", "lt", [1024, 2048]),
    ("port", "rtt_ms", "gt", [200, 500, 1000]),
    ("host", "ports_probed", "lt", [5, 10]),
    ("dns", "resolve_ms", "gt", [100, 300, 1000]),
    ("banner", "banner", "contains", ["OpenSSH_7", "vsFTPd 2", "Microsoft-IIS/6", "Apache/2.2"]),
]


def registry(n: int) -> Registry:
    systems = []
    for i in range(n):
        tier = (Tier.CITY, Tier.DISTRICT, Tier.STREET)[i % 3]
        systems.append(
            System(
                id=f"sys-{i:05d}",
                name=f"system {i}",
                owner=Owner(department=f"dept-{i % 40}"),
                tier=tier,
                mlps_level=2 + i % 2,
                cii=i % 7 == 0,
                endpoints=[Endpoint(url=f"https://s{i}.example.gov.cn/")],
                tags=["e-gov"] if i % 2 else ["records"],
                district=f"d{i % 12}",
            )
        )
    return Registry(scope=Scope(allow=["example.gov.cn"]), systems=tuple(systems))


def synthetic_rules(total: int) -> list[Rule]:
    rules = [r for r in load_rules([shipped_rules_dir()]) if r.enabled]
    i = 0
    while len(rules) < total:
        kind, name, op, values = TEMPLATES[i % len(TEMPLATES)]
        value = values[(i // len(TEMPLATES)) % len(values)]
        data: dict[str, Any] = {
            "id": f"bench_{kind}_{i:03d}",
            "title": f"bench rule {i}",
            "severity": "low",
            "category": "configuration",
            "observation": kind,
            "condition": {
                "all": [{"field": "status", "op": "eq", "value": "ok"}, {"field": name, "op": op, "value": value}]
            },
            "controls": {"nist_800_53": ["CA-7"]},
            "remediation": "bench",
        }
        if i % 10 == 0:
            data["for"] = 2
            data["clear_after"] = 2
        rules.append(Rule.model_validate(data))
        i += 1
    return rules[:total]


def observations(reg: Registry, at: datetime, rnd: random.Random) -> list[Observation]:
    out: list[Observation] = []
    for s in reg.systems:
        host = f"s{s.id[-5:]}.example.gov.cn"
        url = f"https://{host}/"
        open_ports = [p for p in PORTS if p in (80, 443) or rnd.random() < 0.03]
        for p in PORTS:
            state = "open" if p in open_ports else "closed"
            out.append(
                Observation("port", s.id, f"{host}:{p}/tcp", at, "tcp_ports", ObservationStatus.OK, {
                    "host": host, "address": "10.0.0.1", "port": p, "protocol": "tcp", "state": state,
                    "declared": p == 443, "declared_by": "url" if p == 443 else None, "high_risk": p in HIGH_RISK,
                    "rtt_ms": rnd.lognormvariate(2.0, 0.8), "method": "tcp-connect",
                })
            )  # fmt: skip
        out.append(
            Observation("host", s.id, host, at, "tcp_ports", ObservationStatus.OK, {
                "host": host, "reachable": True, "open_ports": open_ports, "ports_probed": len(PORTS),
            })
        )  # fmt: skip
        ok = rnd.random() > 0.02
        out.append(
            Observation("http", s.id, url, at, "http", ObservationStatus.OK if ok else ObservationStatus.ERROR, {
                "url": url, "scheme": "https", "host": host, "reachable": ok, "status_code": 200 if ok else None,
                "latency_ms": rnd.lognormvariate(5.5, 0.6) if ok else None, "final_scheme": "https",
                "redirects_to_https": True, "hsts_present": rnd.random() > 0.3, "server": "nginx",
                "body_sha256": "a" * 64 if rnd.random() > 0.01 else "b" * 64,
            })
        )  # fmt: skip
        out.append(
            Observation("tls", s.id, f"{host}:443", at, "tls", ObservationStatus.OK, {
                "host": host, "port": 443, "tls.protocol": "TLSv1.3" if rnd.random() > 0.05 else "TLSv1",
                "cert.days_to_expiry": rnd.uniform(-5, 400), "cert.self_signed": False, "cert.hostname_match": True,
                "cert.sha256": "c" * 64, "chain.valid": True, "cert.key_bits": 2048 if rnd.random() > 0.02 else 1024,
                "cert.issuer": "CN=CA",
            })
        )  # fmt: skip
        out.append(
            Observation("dns", s.id, host, at, "dns", ObservationStatus.OK, {
                "answers": ["10.0.0.1"], "resolve_ms": rnd.uniform(1, 400),
            })
        )  # fmt: skip
        out.append(
            Observation("banner", s.id, f"{host}:22/tcp", at, "banner", ObservationStatus.OK, {
                "banner": "SSH-2.0-OpenSSH_8.9",
            })
        )  # fmt: skip
    return out


class GcTimer:
    """CPU time the cyclic garbage collector spends, and its full (oldest-generation) passes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
            return
        self.seconds += time.process_time() - self._start
        self.full += info["generation"] == 2

    def take(self) -> tuple[float, int]:
        taken = self.seconds, self.full
        self.seconds, self.full = 0.0, 0
        return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=1354)
    parser.add_argument("--rules", type=int, default=200)
    parser.add_argument("--sweeps", type=int, default=3)
    args = parser.parse_args()
    rnd = random.Random(7)
    reg = registry(args.systems)
    rules = synthetic_rules(args.rules)
    ruleset = RuleSet(rules)
    stateful = sum(r.stateful for r in rules)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    sweeps = [observations(reg, t0 + timedelta(minutes=5 * i), rnd) for i in range(args.sweeps)]
    n_obs = len(sweeps[0])
    per_kind = {k: len(ruleset.for_kind(k)) for k in sorted(ruleset.kinds)}
    print(f"{args.systems} systems, {len(rules)} rules ({stateful} with memory), {n_obs} observations per sweep")
    print("rules per kind: " + ", ".join(f"{k}={n}" for k, n in per_kind.items()))

    # CPU time of this process (one core), so a busy machine does not distort the figures; wall time too.
    engine = AnomalyEngine(ruleset, reg)
    # As in a sweep: the targets with an open finding (here 5%) get every verdict, the rest only "present".
    active = {(o.system_id, o.target) for o in sweeps[0] if rnd.random() < 0.05}
    cpu, wall, save, collect = [], [], [], []
    verdicts = 0
    gc_timer = GcTimer()
    gc.callbacks.append(gc_timer)
    for i, batch in enumerate(sweeps):
        gc_timer.take()
        c0, w0 = time.process_time(), time.perf_counter()
        call = engine.begin(active)
        for obs in batch:
            call.observe(obs)
        c1 = time.process_time()
        verdicts = len(engine.finish(call, t0 + timedelta(minutes=5 * i, seconds=30)))
        c2, w2 = time.process_time(), time.perf_counter()
        cpu.append(c2 - c0)
        wall.append(w2 - w0)
        save.append(c2 - c1)
        collect.append(gc_timer.take())
    gc.callbacks.remove(gc_timer)
    best = min(range(len(cpu)), key=cpu.__getitem__)
    print(
        f"anomaly engine: per sweep {cpu[best] * 1000:.0f} ms CPU ({wall[best] * 1000:.0f} ms wall; of which finish, "
        f"state save included {save[best] * 1000:.0f} ms), {n_obs / cpu[best]:,.0f} observations/s, "
        f"{verdicts} verdicts/sweep, {len(engine.state)} state keys (best of {len(cpu)} sweeps)"
    )
    # The best sweep may be one without a full garbage collection; the mean includes them.
    mean = sum(cpu) / len(cpu)
    each = [f"{c * 1000:.0f} ms (GC {g * 1000:.0f} ms, {f} full)" for c, (g, f) in zip(cpu, collect, strict=True)]
    print(f"  every sweep: {', '.join(each)}; mean {mean * 1000:.0f} ms CPU, {n_obs / mean:,.0f} observations/s")
    # The same with the state persisted in a SQLite store (as in `sentinel scan`): `finish` writes touched keys.
    store = SqliteStore(":memory:")
    engine = AnomalyEngine(ruleset, reg, StoreState(store))
    active = {(o.system_id, o.target) for o in sweeps[0] if rnd.random() < 0.05}
    cpu = []
    for i, batch in enumerate(sweeps):
        c0 = time.process_time()
        with store.transaction():
            engine.evaluate(batch, t0 + timedelta(minutes=5 * i, seconds=30), active)
        cpu.append(time.process_time() - c0)
    best_cpu = min(cpu)
    print(f"anomaly engine, state in SQLite: per sweep {best_cpu * 1000:.0f} ms CPU, {n_obs / best_cpu:,.0f} obs/s")
    cpu = []
    for batch in sweeps:
        c0 = time.process_time()
        ruleset.evaluate_stateless(batch, reg)
        cpu.append(time.process_time() - c0)
    print(f"stateless RuleSet: per sweep {min(cpu) * 1000:.0f} ms CPU, {n_obs / min(cpu):,.0f} observations/s")


if __name__ == "__main__":
    main()
