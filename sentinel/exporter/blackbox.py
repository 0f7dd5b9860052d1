"""A blackbox-exporter-compatible `/probe?target=&module=` answered from the latest stored observations.

It never sends a probe: a scrape of `/probe` reads what the last sweep observed about a registered target, so a
caller cannot make Sentinel reach out to arbitrary addresses. Metric names are blackbox_exporter's, so existing
Grafana dashboards and alert rules keep working.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sentinel.exporter.family import Family
from sentinel.store import SqliteStore
from sentinel.store.reads import ObservationRow
from sentinel.store.sqlite import observations_about

#: Observation kinds each module reads (blackbox's usual module names; no module means all kinds).
MODULES: dict[str, tuple[str, ...]] = {
    "http_2xx": ("http", "tls"),
    "tcp_connect": ("port", "host", "tls"),
    "tls_connect": ("tls",),
    "icmp": ("icmp", "host"),
}


class ProbeRequestError(Exception):
    """A `/probe` request that cannot be answered; `status` is the HTTP status to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def observation_succeeded(status: str, data: Mapping[str, Any]) -> bool:
    """blackbox's meaning of `probe_success` (the target answered), as `sentinel_system_up` reads it: observed,
    reachable, the page opened (no 4xx/5xx), and every declared port open. A port nobody declared (a closed
    high-risk port) is no failure."""
    if status != "ok":
        return False
    if data.get("declared") is False:
        return True
    if data.get("reachable") is False or data.get("available") is False:
        return False
    return not (data.get("declared") is True and data.get("state") != "open")


def _candidates(target: str) -> list[str]:
    """Stored target spellings that `target` may refer to (a URL also covers its TLS endpoint)."""
    names = [target, f"{target}/tcp"]
    parts = urlsplit(target)
    if parts.scheme in ("http", "https") and parts.hostname:
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return names
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        names.append(f"{host}:{port}")
    return names


def _rows(source: SqliteStore | sqlite3.Connection, target: str, kinds: tuple[str, ...] | None) -> list[ObservationRow]:
    names = _candidates(target)
    if isinstance(source, SqliteStore):
        return source.observations_about(target, names, kinds)
    return observations_about(source, target, names, kinds)


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _gauge(name: str, doc: str, value: float, labels: Mapping[str, str] | None = None) -> Family:
    family = Family.gauge(name, doc, list(labels or {}))
    family.add(list((labels or {}).values()), value)
    return family


def probe_families(source: SqliteStore | sqlite3.Connection, target: str | None, module: str | None) -> list[Family]:
    if not target:
        raise ProbeRequestError(400, "missing 'target' parameter (a registered system id, URL or host:port)")
    kinds: tuple[str, ...] | None = None
    if module:
        if module not in MODULES:
            raise ProbeRequestError(400, f"unknown module '{module}' (available: {', '.join(MODULES)})")
        kinds = MODULES[module]
    rows = _rows(source, target, kinds)
    if not rows:
        raise ProbeRequestError(
            404,
            f"no stored observations for target '{target}'"
            + (f" with module '{module}'" if module else "")
            + ": /probe answers only for registered targets a sweep has observed; it never probes on demand",
        )
    parsed = [(r.kind, r.status, r.observed_at, json.loads(r.data)) for r in rows]
    ok = all(observation_succeeded(status, data) for _, status, _, data in parsed)
    timings = (d.get(name) for *_, d in parsed for name in ("latency_ms", "rtt_ms"))
    latencies = [round(float(v) / 1000, 6) for v in timings if isinstance(v, int | float)]
    observed = [ts for _, _, o, _ in parsed if (ts := _timestamp(o)) is not None]
    out = [
        _gauge("probe_success", "Whether the stored observations of the target succeeded.", 1.0 if ok else 0.0),
        _gauge("probe_duration_seconds", "Slowest stored answer of the target.", max(latencies, default=0.0)),
    ]
    if observed:
        out.append(
            _gauge(
                "sentinel_probe_observed_timestamp_seconds",
                "When the oldest of the observations answering this probe was made.",
                min(observed),
            )
        )
    http = next((d for kind, status, _, d in parsed if kind == "http" and status == "ok"), None)
    if http is not None:
        code = http.get("status_code")
        out.append(_gauge("probe_http_status_code", "HTTP status code of the final response.", float(code or 0)))
        out.append(
            _gauge("probe_http_redirects", "Number of redirects followed.", float(http.get("redirect_count") or 0))
        )
        out.append(
            _gauge(
                "probe_http_ssl",
                "Whether the final response was fetched over TLS.",
                1.0 if http.get("final_scheme") == "https" else 0.0,
            )
        )
        if isinstance(http.get("body_bytes"), int):
            out.append(_gauge("probe_http_content_length", "Length of the response body.", float(http["body_bytes"])))
    tls = [d for kind, status, _, d in parsed if kind == "tls" and status == "ok"]
    expiries = [ts for d in tls if (ts := _timestamp(d.get("cert.not_after"))) is not None]
    if expiries:
        out.append(
            _gauge("probe_ssl_earliest_cert_expiry", "Earliest certificate expiry as a Unix timestamp.", min(expiries))
        )
    versions = sorted({str(d["tls.protocol"]) for d in tls if isinstance(d.get("tls.protocol"), str)})
    if versions:
        info = Family.gauge("probe_tls_version_info", "TLS version used (value 1).", ["version"])
        for version in versions:
            info.add([version.replace("TLSv", "TLS ")], 1)
        out.append(info)
    return out
