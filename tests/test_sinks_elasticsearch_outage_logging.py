"""An Elasticsearch outage is logged as state changes: once down, a summary a minute, once back up.

The double really refuses connections (it is stopped); only the clock is virtual, so ten minutes of
the monitor's ship loop (a new Shipper every 10 s, as `runtime/monitor.py` does) run in seconds.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from sentinel.sinks.elasticsearch.client import build_client
from sentinel.sinks.elasticsearch.outbox import outbox_stats
from sentinel.sinks.elasticsearch.setup import Installer
from sentinel.sinks.elasticsearch.shipper import OUTAGE_SUMMARY_EVERY, Shipper
from tests.es_double import EsDouble
from tests.support.es_scenarios import es_settings, open_store
from tests.support.findings import make_finding


class VirtualClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_outage_is_logged_once_then_per_minute_then_once_on_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with EsDouble() as double:
        es = es_settings(double.url, backoff_initial=0.5, backoff_max=5.0, request_timeout=0.5)
        setup = build_client(es)
        Installer(setup, es).install()
        setup.close()
        store = open_store(tmp_path / "s.db", es)
        store.save_findings([make_finding(i) for i in range(30)])
        clock = VirtualClock()
        double.stop()
        minutes = 10
        caplog.set_level(logging.INFO)
        started = clock()
        drains = 0
        while clock() - started < minutes * 60:
            client = build_client(es)
            report = Shipper(store, client, es, clock=clock, sleep=clock.sleep).drain(timeout=10)
            client.close()
            drains += 1
            assert report.remaining == 60 and report.shipped == 0
        noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
        messages = [r.getMessage() for r in noisy]
        assert drains >= 55  # the loop really ran for ten (virtual) minutes, with many refused attempts
        assert sum("became unreachable" in m for m in messages) == 1, messages
        assert double.url.split("//")[1] in messages[0] and "unreachable" in messages[0]  # the reason, once
        summaries = [m for m in messages if "unreachable for" in m]
        assert minutes - 1 <= len(summaries) <= minutes, messages
        assert all("60 documents queued" in m and "old" in m for m in summaries)
        assert len(noisy) == 1 + len(summaries), messages  # nothing else: no per-attempt transport lines
        assert outbox_stats(store).depth == 60

        caplog.clear()
        double.start()
        client = build_client(es)
        up = Shipper(store, client, es, clock=clock, sleep=clock.sleep).drain(timeout=10)
        assert (up.shipped, up.remaining) == (60, 0)
        again = Shipper(store, client, es, clock=clock, sleep=clock.sleep).drain(timeout=1)
        assert again.remaining == 0
        client.close()
        back = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(back) == 1 and "reachable again after 10 min" in back[0] and "60 queued" in back[0], back

        # a second outage is a new state change, logged again
        caplog.clear()
        store.save_findings([make_finding(i) for i in range(30, 32)])
        double.stop()
        client = build_client(es)
        Shipper(store, client, es, clock=clock, sleep=clock.sleep).drain(timeout=OUTAGE_SUMMARY_EVERY / 2)
        client.close()
        store.close()
        second = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(second) == 1 and "became unreachable" in second[0], second
