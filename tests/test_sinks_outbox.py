"""The shared outbox with the jsonl sink (a real file): changes only, at least once and never doubled across a
crash between the write and the commit, one shipper per sink at a time, legacy Elasticsearch rows migrated."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sentinel.app import open_store
from sentinel.models import FindingStatus
from sentinel.sinks.elasticsearch.schema import OUTBOX
from sentinel.sinks.jsonl import JsonLinesSink
from sentinel.sinks.outbox import install_sinks, outbox_stats
from sentinel.sinks.shipper import Shipper
from tests.support.findings import make_finding


def sink(tmp_path: Path) -> JsonLinesSink:
    return JsonLinesSink({"path": str(tmp_path / "out" / "changes.jsonl"), "outbox_min_free_bytes": 0})


def lines(s: JsonLinesSink) -> list[dict[str, object]]:
    return [json.loads(line) for line in s.path.read_text(encoding="utf-8").splitlines()]


def test_changes_are_written_once_each(tmp_path: Path) -> None:
    store, s = open_store(tmp_path / "s.db"), sink(tmp_path)
    install_sinks(store, [s])
    store.save_findings([make_finding(1), make_finding(2)])
    store.save_findings([make_finding(1)])  # unchanged state: no line
    store.save_findings([make_finding(2, FindingStatus.RESOLVED)])
    assert Shipper(store, s).drain(timeout=5).remaining == 0
    assert [(x["change"], x["id"]) for x in lines(s)] == [
        ("new", make_finding(1).id), ("new", make_finding(2).id), ("resolved", make_finding(2).id),
    ]  # fmt: skip
    assert len({x["event_id"] for x in lines(s)}) == 3


def test_a_crash_after_writing_part_of_a_batch_doubles_nothing(tmp_path: Path) -> None:
    store, s = open_store(tmp_path / "s.db"), sink(tmp_path)
    install_sinks(store, [s])
    store.save_findings([make_finding(i) for i in range(10)])
    bodies = [r[0] for r in store.connection.execute("SELECT body FROM outbox WHERE sink = 'jsonl' ORDER BY seq")]
    # the process wrote four lines and half of the fifth, then died before committing the batch
    s.path.parent.mkdir(parents=True)
    s.path.write_bytes(("\n".join(bodies[:4]) + "\n" + bodies[4][:20]).encode())
    report = Shipper(store, s).drain(timeout=5)
    assert (report.shipped, report.remaining) == (10, 0)
    assert [x["id"] for x in lines(s)] == [make_finding(i).id for i in range(10)]


def test_a_rolled_back_write_queues_nothing_and_one_shipper_drains_at_a_time(tmp_path: Path) -> None:
    store, s = open_store(tmp_path / "s.db"), sink(tmp_path)
    install_sinks(store, [s])
    with pytest.raises(RuntimeError, match="sweep failed"), store.transaction():
        store.save_findings([make_finding(1)])
        raise RuntimeError("sweep failed")
    assert outbox_stats(store, "jsonl").depth == 0
    store.save_findings([make_finding(2)])
    holder = Shipper(store, s)
    assert holder._acquire(holder.clock())  # e.g. `sentinel run`'s loop, mid-drain
    other = Shipper(open_store(tmp_path / "s.db"), s).drain(timeout=1)
    assert other.busy and other.remaining == 1 and not s.path.exists()
    holder._release()
    assert Shipper(store, s).drain(timeout=1).remaining == 0


def test_a_pre_issue_12_elasticsearch_queue_is_moved_with_its_sequence(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    db.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    for statements in OUTBOX[:2]:
        for statement in statements:
            db.execute(statement)
    db.execute("INSERT INTO schema_versions VALUES ('es_outbox', 2)")
    for seq in (1, 2, 3):
        db.execute("INSERT INTO es_outbox (stream, doc_id, body, enqueued_at) VALUES ('history', ?, '{}', 0)", (seq,))
    db.execute("DELETE FROM es_outbox WHERE seq < 3")  # two shipped, one queued: the next version must exceed 3
    db.execute("INSERT INTO es_outbox_counters VALUES ('shipped_total', 2)")
    db.close()
    store = open_store(tmp_path / "old.db")
    assert [tuple(r) for r in store.connection.execute("SELECT seq, sink, doc_id FROM outbox")] == [
        (3, "elasticsearch", "3")
    ]
    assert outbox_stats(store, "elasticsearch").shipped_total == 2
    store.connection.execute("DELETE FROM outbox")
    store.connection.execute(
        "INSERT INTO outbox (sink, stream, doc_id, body, enqueued_at) VALUES ('elasticsearch', 'latest', 'x', '{}', 0)"
    )
    assert store.connection.execute("SELECT seq FROM outbox").fetchone()[0] == 4
    assert store.connection.execute("SELECT COUNT(*) FROM es_outbox").fetchone()[0] == 1  # the old name, a view
