"""Append finding changes to a JSON-lines file (for log shippers and SIEMs that tail files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sentinel.sinks.base import SweepOutcome


class JsonLinesSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path


class JsonLinesSink:
    name = "jsonl"

    def __init__(self, options: dict[str, Any]) -> None:
        self.path = JsonLinesSettings.model_validate(options).path

    def publish(self, outcome: SweepOutcome) -> None:
        changes = outcome.changes
        lines = []
        for change, findings in (("new", changes.new), ("reopened", changes.reopened), ("resolved", changes.resolved)):
            for f in findings:
                lines.append(
                    json.dumps({"change": change, "sweep_id": outcome.sweep_id, **f.to_dict()}, ensure_ascii=False)
                )
        if lines:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write("\n".join(lines) + "\n")

    def close(self) -> None:
        return None
