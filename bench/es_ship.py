"""Documents per second drained from the Elasticsearch outbox into the test double (target >= 20,000/s).

Run: python -m bench.es_ship [--findings N] [--observations N] [--batch N] [--sites N]
The double runs in its own process, as a real cluster would; the figure covers reading the outbox,
serialising the bulk requests, the HTTP round trips, classifying every item and deleting what shipped.
`--sites 3`: three instances (a city and two districts, each its own store, site and process) ship to the one
double at once; the figure is all their documents over the wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sentinel.config.settings import Settings
from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.outbox import install_outbox
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.sinks.elasticsearch.setup import Installer
from sentinel.sinks.elasticsearch.shipper import Shipper
from sentinel.store import SqliteStore
from tests.support.findings import make_finding, make_observation


def start_double() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.es_double", "0"], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "Elasticsearch double at http://127.0.0.1:PORT (Ctrl-C stops)"
    return proc, line.split(" at ", 1)[1].split()[0]


def ship_one(url: str, site: str, findings: int, observations: int, batch: int) -> tuple[int, int, float, float, int]:
    """One instance: queue its documents, then drain them. (queued, shipped, queue s, drain s, requests)"""
    es = ElasticsearchSettings(url=url, batch_size=batch, site=site)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{site}.db"
        store = SqliteStore(path)
        install_outbox(store, Settings(store=path, site=site, sinks={"elasticsearch": es.model_dump(mode="json")}))
        client = build_client(es)
        Installer(client, es).install()
        start = time.perf_counter()
        store.save_findings([dataclasses.replace(make_finding(i), site=site) for i in range(findings)])
        store.save_observations([dataclasses.replace(make_observation(i), site=site) for i in range(observations)])
        queued = time.perf_counter() - start
        depth = int(store.connection.execute("SELECT COUNT(*) FROM es_outbox").fetchone()[0])
        start = time.perf_counter()
        report = Shipper(store, client, es).drain(timeout=600)
        drained = time.perf_counter() - start
        client.close()
        store.close()
    return depth, report.shipped + report.deduplicated, queued, drained, report.batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--findings", type=int, default=20_000)
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--sites", type=int, default=1, help="instances shipping at once (city + districts)")
    parser.add_argument("--worker", nargs=2, metavar=("URL", "SITE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(ship_one(args.worker[0], args.worker[1], args.findings, args.observations, args.batch)))
        return
    proc, url = start_double()
    sites = ["city", *(f"district-{n}" for n in range(1, args.sites))][: args.sites]
    try:
        if args.sites == 1:
            runs = [ship_one(url, "city", args.findings, args.observations, args.batch)]
            wall = runs[0][3]
        else:

            def worker(site: str) -> subprocess.Popen[str]:
                argv = [sys.executable, "-m", "bench.es_ship", "--worker", url, site, "--batch", str(args.batch)]
                argv += ["--findings", str(args.findings), "--observations", str(args.observations)]
                return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])

            workers = [worker(site) for site in sites]
            outputs = [w.communicate(timeout=900)[0] for w in workers]
            runs = [tuple(json.loads(out.strip().splitlines()[-1])) for out in outputs]  # type: ignore[misc]
            # the drains overlap; their span is from the first drain's start to the last one's end, which the
            # longest drain bounds from below: report per instance and the aggregate over the longest
            wall = max(r[3] for r in runs)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    for site, (depth, docs, queued, drained, batches) in zip(sites, runs, strict=True):
        print(
            f"{site}: queued {depth} documents in {queued:.2f} s ({depth / queued:,.0f} docs/s, in the write "
            f"transaction); shipped {docs} in {drained:.2f} s: {docs / drained:,.0f} docs/s "
            f"(batch {args.batch}, {batches} bulk requests)"
        )
    total = sum(r[1] for r in runs)
    print(f"all {len(runs)} instance(s): {total} documents in {wall:.2f} s of draining: {total / wall:,.0f} docs/s")


if __name__ == "__main__":
    main()
