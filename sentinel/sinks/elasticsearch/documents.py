"""Findings and observations as Elastic Common Schema documents."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sentinel import __version__
from sentinel.models import Finding, Observation, Severity, Vantage
from sentinel.registry.models import System

SystemLookup = Callable[[str], System | None]

#: ECS `event.severity` is numeric; keep the order of Sentinel's severities.
SEVERITY_NUMBER = {Severity.INFO: 1, Severity.LOW: 2, Severity.MEDIUM: 3, Severity.HIGH: 4, Severity.CRITICAL: 5}
VULNERABILITY_SEVERITY = {
    Severity.INFO: "None",
    Severity.LOW: "Low",
    Severity.MEDIUM: "Medium",
    Severity.HIGH: "High",
    Severity.CRITICAL: "Critical",
}


def observer() -> dict[str, Any]:
    """ECS `observer.*` of this host; each document adds `observer.name` (site/vantage) from what it records."""
    return {
        "vendor": "Sentinel",
        "product": "Sentinel",
        "type": "scanner",
        "version": __version__,
        "hostname": socket.gethostname(),
    }


def latest_id(finding: Finding) -> str:
    """`_id` of a finding's latest-state document: site, vantage and finding id, so instances shipping to one
    cluster never overwrite each other's state. A finding recorded before sites and not yet adopted (no vantage)
    keeps the id its document had then, which adoption retires (`ElasticsearchSink.encode_rekeyed`)."""
    if finding.vantage is None:
        return finding.id
    return f"{finding.site}:{finding.vantage.value}:{finding.id}"


def _who(site: str | None, vantage: Vantage | None, host_observer: dict[str, Any]) -> dict[str, Any]:
    """`sentinel.site` / `sentinel.vantage` (what a city view filters on), the same in `labels.*`, and ECS
    `observer.name`; a record from before sites has neither."""
    if not site or vantage is None:
        return {"observer": host_observer, "sentinel": {"site": None, "vantage": None}, "labels": {}}
    return {
        "observer": {**host_observer, "name": f"{site}/{vantage.value}"},
        "sentinel": {"site": site, "vantage": vantage.value},
        "labels": {"site": site, "vantage": vantage.value},
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def is_traffic_detection(finding: Finding) -> bool:
    """Passive traffic detections are alerts (ECS event.kind=alert); everything else is state."""
    kind = str(finding.evidence.get("kind", ""))
    return finding.category.startswith("traffic") or finding.rule_id.startswith("traffic") or kind.startswith("traffic")


def target_fields(target: str) -> dict[str, Any]:
    """The probed system in destination.* / url.* / network.*, from a target string (URL, host:port/tcp, host)."""
    out: dict[str, Any] = {}
    if "://" in target:
        parts = urlsplit(target)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = None
        out["url"] = {"full": target, "original": target, "scheme": parts.scheme, "domain": host, "path": parts.path}
        if port is not None:
            out["url"]["port"] = port
        out["destination"] = _destination(host, port)
        return out
    rest, _, transport = target.partition("/")
    if transport:
        out["network"] = {"transport": transport.lower()}
    host, port_text = rest, ""
    if rest.startswith("["):  # [v6]:port
        host, _, tail = rest[1:].partition("]")
        port_text = tail.lstrip(":")
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    out["destination"] = _destination(host, int(port_text) if port_text.isdigit() else None)
    return out


def _destination(host: str, port: int | None) -> dict[str, Any]:
    dest: dict[str, Any] = {"address": host}
    try:
        dest["ip"] = str(ipaddress.ip_address(host))
    except ValueError:
        dest["domain"] = host
    if port is not None:
        dest["port"] = port
    return dest


def tls_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """Map the probes' dotted tls.*/cert.* fields into ECS tls.*."""
    tls: dict[str, Any] = {}
    server: dict[str, Any] = {}
    if isinstance(data.get("tls.protocol"), str):
        protocol = data["tls.protocol"]  # e.g. "TLSv1.3"
        tls["version_protocol"] = "tls"
        tls["version"] = protocol.replace("TLSv", "").replace("SSLv", "")
    if isinstance(data.get("tls.cipher"), str):
        tls["cipher"] = data["tls.cipher"]
    for ours, ecs in (("cert.not_after", "not_after"), ("cert.not_before", "not_before")):
        if isinstance(data.get(ours), str):
            server[ecs] = data[ours]
            server.setdefault("x509", {})[ecs] = data[ours]
    for ours, ecs in (("cert.subject", "subject"), ("cert.issuer", "issuer")):
        if isinstance(data.get(ours), str):
            server[ecs] = data[ours]
    if server:
        tls["server"] = server
    return {"tls": tls} if tls else {}


def system_fields(system: System | None, system_id: str) -> dict[str, Any]:
    """Registry metadata: sentinel.system.* (typed) and labels.* (flat strings Kibana filters on)."""
    if system is None:
        return {"sentinel": {"system": {"id": system_id}}, "labels": {"system_id": system_id}}
    info: dict[str, Any] = {
        "id": system.id,
        "name": system.name,
        "tier": system.tier.value,
        "department": system.owner.department,
        "mlps_level": system.mlps_level,
        "cii": system.cii,
        "tags": list(system.tags),
    }
    labels = {
        "system_id": system.id,
        "tier": system.tier.value,
        "department": system.owner.department,
        "mlps_level": str(system.mlps_level),
    }
    if system.district:
        info["district"] = labels["district"] = system.district
    return {"sentinel": {"system": info}, "labels": labels}


def finding_document(finding: Finding, system: System | None, host_observer: dict[str, Any]) -> dict[str, Any]:
    alert = is_traffic_detection(finding)
    changed_at = max(t for t in (finding.last_seen, finding.resolved_at) if t is not None)
    doc: dict[str, Any] = {
        "@timestamp": changed_at.isoformat(),
        "message": finding.title,
        "event": {
            "kind": "alert" if alert else "state",
            "category": ["network", "intrusion_detection"] if alert else ["vulnerability", "configuration"],
            "type": ["indicator"] if alert else ["info"],
            "dataset": "sentinel.finding",
            "module": "sentinel",
            "severity": SEVERITY_NUMBER[finding.severity],
            "id": finding.id,
            "start": finding.first_seen.isoformat(),
            "end": _iso(finding.resolved_at),
            "outcome": "success",
        },
        "rule": {
            "id": finding.rule_id,
            "name": finding.rule_id,
            "category": finding.category,
            "ruleset": "sentinel",
            "description": finding.title,
            "reference": list(finding.controls),
        },
        "vulnerability": {
            "id": finding.rule_id,
            "severity": VULNERABILITY_SEVERITY[finding.severity],
            "category": [finding.category],
            "description": finding.title,
            "classification": "MLPS 2.0",
            "reference": list(finding.controls),
            "scanner": {"vendor": "Sentinel"},
        },
        **target_fields(finding.target),
        **tls_fields(finding.evidence),
    }
    who = _who(finding.site, finding.vantage, host_observer)
    meta = system_fields(system, finding.system_id)
    doc["observer"] = who["observer"]
    doc["labels"] = {**who["labels"], **meta["labels"]}
    doc["sentinel"] = {
        **who["sentinel"],
        **meta["sentinel"],
        "finding": {
            "id": finding.id,
            "status": finding.status.value,
            "status_reason": finding.status_reason,
            "status_by": finding.status_by,
            "first_seen": finding.first_seen.isoformat(),
            "last_seen": finding.last_seen.isoformat(),
            "occurrences": finding.occurrences,
            "regression": finding.regression,
            "suppressed_until": _iso(finding.suppressed_until),
            "resolved_at": _iso(finding.resolved_at),
            "remediation": finding.remediation,
            "target": finding.target,
        },
        "controls": list(finding.controls),
        "evidence": _scalar_leaves(finding.evidence),
    }
    return doc


def observation_document(obs: Observation, system: System | None, host_observer: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@timestamp": obs.observed_at.isoformat(),
        "message": f"{obs.kind} {obs.status.value} {obs.target}",
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["info"] if obs.status.value == "ok" else ["error"],
            "dataset": f"sentinel.observation.{obs.kind}",
            "module": "sentinel",
            "outcome": "success" if obs.status.value == "ok" else "failure",
        },
        **target_fields(obs.target),
        **tls_fields(obs.data),
    }
    who = _who(obs.site, obs.vantage, host_observer)
    meta = system_fields(system, obs.system_id)
    doc["observer"] = who["observer"]
    doc["labels"] = {**who["labels"], **meta["labels"]}
    doc["sentinel"] = {
        **who["sentinel"],
        **meta["sentinel"],
        "observation": {
            "kind": obs.kind,
            "probe": obs.probe,
            "status": obs.status.value,
            "target": obs.target,
            "error": obs.error,
            "data": _scalar_leaves(obs.data),
        },
    }
    return doc


def _scalar_leaves(data: Mapping[str, Any]) -> dict[str, Any]:
    """`flattened` fields take scalars and arrays of scalars; render anything deeper as text."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None or isinstance(value, str | int | float | bool):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, str | int | float | bool) for v in value):
            out[key] = list(value)
        else:
            out[key] = str(value)
    return out
