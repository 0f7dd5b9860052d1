"""OSCAL 1.1 assessment-results for a report, and Sentinel's own catalog of the GB/T 22239 requirements it covers.

UUIDs are name-based (uuid5) over stable parts, so the same report content gives the same document.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sentinel import __version__
from sentinel.reports.model import ControlRecord, ReportData

OSCAL_VERSION = "1.1.2"
SENTINEL_NS = "https://sentinel.example/ns"
NS = uuid.UUID("6c1f1f2e-3b7a-5d5e-9a51-53656e74696e")  # Sentinel's namespace for name-based UUIDs


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(NS, "\x1f".join(parts)))


def control_id(framework: str, control: str) -> str:
    """OSCAL ids are tokens: '8.1.4.4 b)' in mlps2-l3 becomes 'mlps2-l3_8.1.4.4_b'."""
    return f"{framework}_{re.sub(r'[^A-Za-z0-9.]+', '_', control).strip('_')}"


def catalog(requirements: Iterable[tuple[str, str, str, str]]) -> dict[str, Any]:
    """(framework, control, title, text) → an OSCAL catalog with one group per framework."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for framework, control, title, text in requirements:
        groups.setdefault(framework, []).append(
            {
                "id": control_id(framework, control),
                "title": title or control,
                "props": [{"name": "label", "value": control}],
                "parts": [{"id": control_id(framework, control) + "_smt", "name": "statement", "prose": text or title}],
            }
        )
    return {
        "catalog": {
            "uuid": _uuid("catalog", *sorted(groups)),
            "metadata": {
                "title": "Sentinel catalog: GB/T 22239-2019 requirements with network-observable evidence",
                "last-modified": "2026-01-01T00:00:00Z",
                "version": __version__,
                "oscal-version": OSCAL_VERSION,
            },
            "groups": [{"id": fw, "title": fw, "controls": controls} for fw, controls in sorted(groups.items())],
        }
    }


def _observation(r: ControlRecord) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "uuid": _uuid("obs", r.system_id, r.framework, r.control),
        "title": f"{r.system_id}: {r.control}",
        "description": r.observed or "No finding from remote monitoring for this requirement.",
        "methods": ["TEST"],
        "types": ["finding"] if r.verdict in ("non_compliant", "partially_compliant") else ["control-objective"],
        "subjects": [{"subject-uuid": _uuid("system", r.system_id), "type": "component"}],
        "collected": _datetime(r.observed_at or "1970-01-01T00:00:00+00:00"),
        "props": [{"name": "verdict", "ns": SENTINEL_NS, "value": r.verdict}],
    }
    if r.evidence:
        obs["relevant-evidence"] = [{"description": str(e)[:500]} for e in r.evidence[:10]]
    return obs


def assessment_results(report: ReportData) -> dict[str, Any]:
    """OSCAL 1.1.2 assessment-results. The assessed systems are components of the result's own
    local-definitions (the document-level local-definitions admit only objectives, methods and activities)."""
    assessed = [r for r in report.records if r.verdict != "not_applicable"]
    findings = []
    for r in assessed:
        # OSCAL knows only satisfied / not-satisfied: a remote "no finding" is not a claim of satisfaction,
        # so it is recorded as an observation without a satisfied finding; partial is not-satisfied + a prop.
        if r.verdict in ("non_compliant", "partially_compliant"):
            finding: dict[str, Any] = {
                "uuid": _uuid("finding", r.system_id, r.framework, r.control),
                "title": f"{r.control} {r.title}".strip(),
                "description": r.observed or r.verdict,
                "target": {
                    "type": "objective-id",
                    "target-id": control_id(r.framework, r.control),
                    "status": {"state": "not-satisfied"},
                },
                "related-observations": [{"observation-uuid": _uuid("obs", r.system_id, r.framework, r.control)}],
            }
            if r.verdict == "partially_compliant":
                finding["props"] = [{"name": "mlps-result", "ns": SENTINEL_NS, "value": "partial"}]
            findings.append(finding)
    result: dict[str, Any] = {
        "uuid": _uuid("result", report.generated_at),
        "title": report.title,
        "description": "Continuous remote monitoring results",
        "start": _datetime(report.period["since"] or report.generated_at),
        "end": _datetime(report.period["until"] or report.generated_at),
        "local-definitions": {
            "components": [
                {
                    "uuid": _uuid("system", s["id"]),
                    "type": "service",
                    "title": f"{s['name']} ({s['id']})",
                    "description": f"{s['department']}; tier {s['tier']}; MLPS level {s['mlps_level']}",
                    "status": {"state": "operational"},
                }
                for s in report.systems
            ]
        }
        if report.systems
        else {},
        "reviewed-controls": {
            "control-selections": [
                {
                    "include-controls": [
                        {"control-id": cid} for cid in sorted({control_id(r.framework, r.control) for r in assessed})
                    ]
                }
                if assessed
                else {"include-all": {}}
            ]
        },
    }
    if not result["local-definitions"]:
        del result["local-definitions"]
    if assessed:
        result["observations"] = [_observation(r) for r in assessed]
    if findings:
        result["findings"] = findings
    return {
        "assessment-results": {
            "uuid": _uuid("ar", report.generated_at, *sorted(s["id"] for s in report.systems)),
            "metadata": {
                "title": report.title,
                "last-modified": _datetime(report.generated_at),
                "version": __version__,
                "oscal-version": OSCAL_VERSION,
                "parties": [
                    {"uuid": _uuid("party", "sentinel"), "type": "organization", "name": "Sentinel remote monitor"}
                ],
            },
            "import-ap": {"href": "#sentinel-continuous-monitoring-plan"},
            "local-definitions": {
                "activities": [
                    {
                        "uuid": _uuid("activity", "remote-test"),
                        "title": "Remote network test (测试)",
                        "description": "Active probes and rule evaluation by Sentinel",
                        "props": [{"name": "method", "ns": SENTINEL_NS, "value": "TEST"}],
                    }
                ],
            },
            "results": [result],
        }
    }


def _datetime(value: str) -> str:
    """OSCAL date-times need an offset: a naive stamp is taken as UTC."""
    dt = datetime.fromisoformat(value)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).isoformat()
