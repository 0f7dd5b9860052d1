"""Documents per second drained from the Elasticsearch outbox into the test double (target >= 20,000/s).

Run: python -m bench.es_ship [--findings N] [--observations N] [--batch N]
The double runs in its own process, as a real cluster would; the figure covers reading the outbox,
serialising the bulk requests, the HTTP round trips, classifying every item and deleting what shipped.
"""

from __future__ import annotations

import argparse
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
from tests.test_es_scenarios import make_finding, make_observation


def start_double() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.es_double", "0"], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "Elasticsearch double at http://127.0.0.1:PORT (Ctrl-C stops)"
    return proc, line.split(" at ", 1)[1].split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--findings", type=int, default=20_000)
    parser.add_argument("--observations", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args()
    proc, url = start_double()
    try:
        es = ElasticsearchSettings(url=url, batch_size=args.batch)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.db"
            store = SqliteStore(path)
            install_outbox(store, Settings(store=path, sinks={"elasticsearch": es.model_dump(mode="json")}))
            client = build_client(es)
            Installer(client, es).install()
            start = time.perf_counter()
            store.save_findings([make_finding(i) for i in range(args.findings)])
            store.save_observations([make_observation(i) for i in range(args.observations)])
            queued = time.perf_counter() - start
            depth = int(store.connection.execute("SELECT COUNT(*) FROM es_outbox").fetchone()[0])
            start = time.perf_counter()
            report = Shipper(store, client, es).drain(timeout=600)
            drained = time.perf_counter() - start
            client.close()
            store.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    docs = report.shipped + report.deduplicated
    print(f"queued {depth} documents in {queued:.2f} s ({depth / queued:,.0f} docs/s, in the write transaction)")
    print(
        f"shipped {docs} documents in {drained:.2f} s: {docs / drained:,.0f} docs/s "
        f"(batch {args.batch}, {report.batches} bulk requests, {report.remaining} left)"
    )


if __name__ == "__main__":
    main()
