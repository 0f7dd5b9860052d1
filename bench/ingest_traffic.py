"""Benchmark: the parent's `Sentinel.ingest` of a capture's observations, as `sentinel pcap analyze` runs it.

`findings_from` (sentinel/cli/pcap_cmd.py) hands the analyser's observations to a sibling over the registry
plus the unregistered-hosts pseudo-system, and that ingest (store the observations, every rule, the tracker,
the audit record) is what the command does between the child's last packet and the printed findings.

    python -m bench.ingest_traffic [--observations PICKLE] [--repeat 5] [--packets 2000000] [--keep DIR]

`--observations`: a pickled list of `Observation` (e.g. the 12,071 of the 2-million-packet `mixed` capture);
without it the capture is generated (bench/pcap_mixes.py) and analysed in this process (`analyze_file`), which
takes a minute on a fresh machine. Each run ingests into a fresh store, built as the command builds it (rules
loaded and the tracker made first). Every run is printed with its phases: `stamp` (site and vantage),
`save_observations`, `evaluate` (every rule), `tracker` (`FindingTracker.apply`) and `rest` (mostly the
transaction's commit with its WAL checkpoint; the audit record, accepted risks, suppression expiry); then the
median of each column and the best run (by wall time). `digest` hashes
every table the ingest wrote (its own timestamp masked), so runs, and code before and after a change, can be
compared for identical results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sentinel.app as app_module
from bench import pcap_mixes as mixes
from bench.pcap_analyze import REGISTRY
from sentinel.cli.common import build_app
from sentinel.engine.anomaly import AnomalyEngine
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Observation
from sentinel.registry.loader import load_registry
from sentinel.store import SqliteStore
from sentinel.traffic.analyze import analyze_file, with_unregistered
from sentinel.traffic.intel import load_intel, shipped_intel_dir

PHASES = ("stamp", "save_observations", "evaluate", "tracker", "rest")


@contextmanager
def phase_timers() -> Iterator[dict[str, float]]:
    """Seconds spent in each phase of the ingest, by wrapping what `Sentinel.ingest` calls for the duration."""
    spent = dict.fromkeys(PHASES, 0.0)
    patched: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[phase] += time.perf_counter() - start

        patched.append((owner, name, original))
        setattr(owner, name, timed)

    wrap(app_module, "stamped", "stamp")  # `ingest` calls it by its module-level name
    wrap(SqliteStore, "save_observations", "save_observations")
    wrap(AnomalyEngine, "evaluate", "evaluate")
    wrap(FindingTracker, "apply", "tracker")
    try:
        yield spent
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def digest(db: Path, now: datetime, fingerprint: str) -> str:
    """A hash of every table's rows (in a stable order), with the ingest's own timestamp and the settings'
    fingerprint (which names the store's temporary path) masked."""
    stamp = now.astimezone(UTC).isoformat()
    h = hashlib.sha256()
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        for table in tables:
            rows = [
                json.dumps(list(r), ensure_ascii=False, default=str) for r in con.execute(f'SELECT * FROM "{table}"')
            ]
            h.update(table.encode())
            for text in sorted(rows):
                h.update(text.replace(stamp, "NOW").replace(fingerprint, "SETTINGS").encode())
    con.close()  # the context manager only commits
    return h.hexdigest()[:16]


def one_run(observations: list[Observation], registry: Path) -> tuple[float, dict[str, float], int, str]:
    """One ingest into a fresh store: wall seconds, seconds per phase, findings made, digest of the store."""
    with tempfile.TemporaryDirectory(prefix="sentinel-ingest-") as work:
        db = Path(work) / "bench.db"
        app = build_app(None, registry=registry, store=db, rules=None)
        try:
            _ = app.rules  # as the command does while the capture's child works
            _ = app.tracker
            traffic = app.sibling(with_unregistered(app.registry))
            now, fingerprint = app.clock(), app.settings.fingerprint()
            try:
                with phase_timers() as spent:
                    start = time.perf_counter()
                    changes = traffic.ingest(observations, now, "pcap:bench").changes
                    took = time.perf_counter() - start
            finally:
                traffic.close()
        finally:
            app.close()
        spent["rest"] = took - sum(spent[p] for p in PHASES if p != "rest")
        return took, spent, len(changes.new), digest(db, now, fingerprint)


def generated_observations(work: Path, packets: int, registry: Path) -> list[Observation]:
    """The analyser's observations of a generated `mixed` capture (what the command's child hands back)."""
    path = work / f"mixed_{packets}.pcap"
    if not path.exists():
        start = time.perf_counter()
        mixes.generate(path, packets, "mixed")
        print(f"# wrote {path.name}: {packets:,} packets in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    result = analyze_file(path, load_registry(registry), load_intel([shipped_intel_dir()]))
    print(f"# analysed {path.name} in {time.perf_counter() - start:.1f} s", flush=True)
    return result.observations


def row(label: str, took: float, spent: dict[str, float], extra: str = "") -> None:
    phases = " ".join(f"{spent[p] * 1000:>10.1f}" for p in PHASES)
    print(f"{label:>8} {took * 1000:>9.1f} {phases} {extra}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=Path, help="Pickled list of Observation (default: generate).")
    parser.add_argument("--repeat", type=int, default=5, help="Ingests, each into a fresh store.")
    parser.add_argument("--packets", type=int, default=2_000_000, help="Packets of the generated capture.")
    parser.add_argument("--keep", type=Path, help="Write the generated capture here and keep it.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        registry = work / "registry.yaml"
        registry.write_text(REGISTRY)
        if args.observations is not None:
            with args.observations.open("rb") as f:
                observations: list[Observation] = pickle.load(f)
        else:
            observations = generated_observations(work, args.packets, registry)
        print(f"# {len(observations):,} observations, {args.repeat} runs, each into a fresh store (ms)")
        print(f"{'run':>8} {'ingest':>9} " + " ".join(f"{p[:10]:>10}" for p in PHASES) + " findings digest")
        runs: list[tuple[float, dict[str, float]]] = []
        digests: set[str] = set()
        for i in range(args.repeat):
            took, spent, found, hashed = one_run(observations, registry)
            runs.append((took, spent))
            digests.add(hashed)
            row(str(i + 1), took, spent, f"{found:>8} {hashed}")
        if len(runs) > 1:
            ordered = sorted(runs, key=lambda r: r[0])
            median = {p: statistics.median(s[p] for _, s in runs) for p in PHASES}
            row("median", statistics.median(t for t, _ in runs), median)
            row("best", *ordered[0])
        if len(digests) > 1:
            raise SystemExit(f"runs stored different results: {sorted(digests)}")


if __name__ == "__main__":
    main()
