"""An integrity manifest: SHA-256 of the report file and of its evidence set, so edits are detectable."""

from __future__ import annotations

import hashlib
import json
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

from sentinel import __version__
from sentinel.reports.model import ReportData


def _plain(value: Any) -> Any:
    """The same JSON as dataclasses.asdict gives, without its deep copies (seconds on an estate's records)."""
    if is_dataclass(value) and not isinstance(value, type):
        return value.__dict__
    return str(value)


def evidence_digest(report: ReportData) -> str:
    """Canonical JSON (sorted keys, no whitespace) of every record and problem, hashed."""
    evidence = {"records": report.records, "problems": report.problems, "exceptions": report.exceptions}
    blob = json.dumps(evidence, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain)
    return hashlib.sha256(blob.encode()).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(report: ReportData, output: Path, fmt: str) -> Path:
    manifest: dict[str, Any] = {
        "generator": f"sentinel {__version__}",
        "generated_at": report.generated_at,
        "report": {"file": output.name, "format": fmt, "sha256": file_digest(output), "bytes": output.stat().st_size},
        "evidence_set": {
            "sha256": evidence_digest(report),
            "records": len(report.records),
            "problems": len(report.problems),
        },
        "scope": report.scope,
    }
    path = output.with_name(output.name + ".manifest.json")
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def verify_manifest(manifest_path: Path) -> list[str]:
    """Problems found (empty: the report file matches its manifest)."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        report_file = manifest_path.with_name(str(manifest["report"]["file"]))
        expected = str(manifest["report"]["sha256"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        return [f"{manifest_path}: not a Sentinel report manifest ({type(exc).__name__}: {exc})"]
    if not report_file.exists():
        return [f"{report_file}: missing"]
    if file_digest(report_file) != expected:
        return [f"{report_file}: SHA-256 does not match the manifest (the report was changed)"]
    return []
