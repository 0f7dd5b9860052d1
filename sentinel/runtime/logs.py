"""Structured JSON logs with ECS field names when not on a terminal, readable lines when on one."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from sentinel import __version__

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class EcsJsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
            "ecs.version": "8.11.0",
            "service.name": "sentinel",
            "service.version": __version__,
            "process.pid": record.process,
        }
        extra = {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}
        if extra:
            doc["sentinel"] = extra
        if record.exc_info:
            doc["error.type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            doc["error.stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(level: int = logging.INFO, json_logs: bool | None = None) -> None:
    """JSON when stderr is not a terminal (or SENTINEL_LOG_FORMAT=json), text otherwise."""
    wanted = os.environ.get("SENTINEL_LOG_FORMAT")
    use_json = (
        json_logs if json_logs is not None else (wanted == "json" or (wanted != "text" and not sys.stderr.isatty()))
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        EcsJsonFormatter() if use_json else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
