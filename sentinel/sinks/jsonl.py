"""Append finding changes (new, reopened, resolved) to a JSON-lines file, for log shippers and SIEMs that tail files.

Each line carries `event_id`, a hash of its content. Lines are appended and fsynced before their rows leave the
outbox; if the process dies in between, the resend first looks at the file's tail and skips the part of the batch
that is already there (bodies are fixed at enqueue time, so the bytes match), so a line is never written twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import Field

from sentinel.sinks.base import Delivery, EncodeContext, Entry, FindingChange, OutboxSink, Queued, content_id
from sentinel.sinks.outbox import dumps
from sentinel.sinks.settings import SinkOptions

CHANGES = ("new", "reopened", "resolved")


class JsonLinesSettings(SinkOptions):
    path: Path = Field(description="file the lines are appended to (its folder is created)")


def overlap(tail: bytes, batch: bytes) -> int:
    """Length of the longest end of `tail` that is a start of `batch`: what a crashed attempt already wrote.

    An attempt starts writing at a line start, so only line starts in `tail` are candidates (earliest first)."""
    start = 0
    while start < len(tail):
        if batch.startswith(tail[start:]):
            return len(tail) - start
        start = tail.find(b"\n", start) + 1
        if start == 0:
            break
    return 0


class JsonLinesSink(OutboxSink):
    name = "jsonl"
    title = "JSON-lines file"
    Options = JsonLinesSettings
    needs_previous = True

    def __init__(self, options: Mapping[str, object] | JsonLinesSettings) -> None:
        super().__init__(options)
        self.path: Path = self.options.path  # type: ignore[attr-defined]

    def describe(self) -> str:
        return str(self.path)

    def encode_findings(self, changes: Sequence[FindingChange], ctx: EncodeContext) -> list[Entry]:
        out = []
        for change in changes:
            if change.kind not in CHANGES:
                continue
            line = {"change": change.kind, "sweep_id": ctx.sweep_id, **change.finding.to_dict()}
            event_id = content_id(self.name, dumps(line))
            out.append(Entry("change", event_id, json.dumps({**line, "event_id": event_id}, ensure_ascii=False)))
        return out

    def deliver(self, rows: Sequence[Queued], state: Mapping[str, str]) -> Delivery:
        batch = b"".join(r.body.encode() + b"\n" for r in rows)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab+") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - len(batch)))
                done = overlap(fh.read(), batch)
                fh.write(batch[done:])
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            return Delivery(unreachable=f"{self.path}: {exc.strerror or exc}")
        return Delivery(statuses=[(200, "")] * len(rows))
