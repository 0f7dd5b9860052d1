"""Typed settings, loaded in one place: defaults < `--config FILE` < `SENTINEL_*` environment < flags."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sentinel.errors import InputError, Problem
from sentinel.findings.policy import FindingsSettings
from sentinel.notify.settings import NotifySettings
from sentinel.runtime.settings import RunSettings, ServeSettings
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings
from sentinel.web.settings import WebSettings
from sentinel.yamlio import load_yaml_file, validation_problems

HIGH_RISK_PORTS = (21, 23, 135, 139, 445, 1433, 2375, 3306, 3389, 5432, 5900, 6379, 9200, 11211, 27017)
ENV_PREFIX = "SENTINEL_"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class CollectorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    probes: list[str] = Field(
        default_factory=lambda: [
            "tcp_ports",
            "icmp",
            "http",
            "tls",
            "tls_scan",
            "banners",
            "exposure",
            "dns",
            "http_security",
            "web_integrity",
        ]
    )
    scan_method: Literal["auto", "syn", "connect"] = Field(
        default="auto",
        description="port scan: SYN with raw-socket rights (auto); syn = SYN, falling back to connect with a "
        "warning; connect = connect scan only",
    )
    high_risk_ports: list[int] = Field(default_factory=lambda: list(HIGH_RISK_PORTS))
    connect_timeout: float = Field(default=3.0, gt=0, le=60)
    tls_timeout: float = Field(default=5.0, gt=0, le=60)
    http_timeout: float = Field(default=15.0, gt=0, le=120)
    job_timeout: float = Field(default=120.0, gt=0, le=3600)
    retries: int = Field(default=1, ge=0, le=5)
    per_target_rate: float = Field(default=5.0, gt=0, description="connections per second per address")
    per_target_burst: float = Field(default=5.0, ge=1)
    per_target_concurrency: int = Field(default=4, ge=1, le=256)
    global_rate: float = Field(default=500.0, gt=0, description="connections per second in all")
    # A raw probe (SYN, ICMP echo) is one small packet that the target's kernel answers without any process
    # accepting a connection, so it has its own budget, counted in packets (nmap's --max-rate), per address
    # and in all.
    per_target_packet_rate: float = Field(
        default=100.0, gt=0, description="raw probe packets (SYN, ICMP echo) per second per address"
    )
    per_target_packet_burst: float = Field(default=20.0, ge=1)
    global_packet_rate: float = Field(default=2000.0, gt=0, description="raw probe packets per second in all")
    rtt_initial_timeout: float = Field(
        default=1.0, gt=0, le=60, description="raw probe timeout before any RTT is measured (nmap's initial)"
    )
    rtt_min_timeout: float = Field(
        default=0.1,
        gt=0,
        le=60,
        description="floor of the adaptive raw probe timeout (srtt + 4 rttvar); its ceiling is connect_timeout",
    )
    discovery_ports: list[int] | None = Field(
        default=None,
        description="ports the port_discovery probe sweeps; default: nmap's 1,000 most frequent TCP ports",
    )
    max_connections: int = Field(default=256, ge=1, le=10000)
    max_jobs: int = Field(default=128, ge=1, le=10000)
    max_redirects: int = Field(default=5, ge=0, le=20)
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    ca_file: Path | None = None
    contact: str | None = Field(default=None, description="shown in the User-Agent so owners can reach you")
    dns_resolvers: list[str] = Field(
        default_factory=list,
        description="resolvers the dns probe asks; each must be inside the registry scope; "
        "empty: the nameservers of /etc/resolv.conf",
    )
    vulnerable_versions: Path | None = Field(default=None, description="known-vulnerable versions file")
    web_hidden_link_keywords: Path | None = Field(default=None, description="extra hidden-link (暗链) keywords")
    web_sensitive_keywords: Path | None = Field(default=None, description="extra sensitive keywords")
    web_max_path_checks: int = Field(default=40, ge=1, le=200)
    web_path_read_bytes: int = Field(default=4096, ge=512, le=65536)
    web_page_bytes: int = Field(default=1_000_000, ge=16384)

    @field_validator("discovery_ports")
    @classmethod
    def _discovery_ports(cls, values: list[int] | None) -> list[int] | None:
        if values is None:
            return None
        bad = [v for v in values if not 1 <= v <= 65535]
        if bad:
            raise ValueError(f"ports must be 1-65535: {', '.join(map(str, bad[:10]))}")
        if not values:
            raise ValueError("give at least one port, or leave it out for the top 1,000")
        return sorted(set(values))

    @field_validator("dns_resolvers")
    @classmethod
    def _resolver_addresses(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _is_ip(v)]
        if bad:
            raise ValueError(f"not IP addresses: {', '.join(bad)}")
        return values


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    registry: Path | None = None
    store: Path = Path("sentinel.db")
    rules: list[Path] = Field(default_factory=list)
    actor: str = Field(default_factory=lambda: os.environ.get("USER") or "operator")
    collectors: CollectorSettings = Field(default_factory=CollectorSettings)
    sinks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    web: WebSettings = Field(default_factory=WebSettings)
    run: RunSettings = Field(default_factory=RunSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    elasticsearch: ElasticsearchSettings | None = None
    findings: FindingsSettings = Field(default_factory=FindingsSettings)

    def fingerprint(self) -> str:
        """A hash of the effective configuration, written into each sweep's audit record."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """SENTINEL_STORE=x, SENTINEL_COLLECTORS__CONNECT_TIMEOUT=2 (double underscore nests)."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX) or key.startswith(f"{ENV_PREFIX}TEST"):
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        parsed: Any = value
        if value[:1] in "[{":
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = value
        if path == ["rules"] and isinstance(parsed, str):
            parsed = [p for p in parsed.split(os.pathsep) if p]
        node[path[-1]] = parsed
    return out


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_settings(
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    data: dict[str, Any] = {}
    source = "<settings>"
    raw: Any = None
    if config_file is not None:
        raw = load_yaml_file(config_file)
        source = str(config_file)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise InputError([Problem(source, 1, "a settings file must be a mapping")])
        data = dict(raw)
        base = config_file.parent
        for key in ("registry", "store"):
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str(base / data[key])
        findings = data.get("findings")
        exceptions = findings.get("exceptions") if isinstance(findings, dict) else None
        if isinstance(findings, dict) and isinstance(exceptions, str) and not Path(exceptions).is_absolute():
            data["findings"] = {**findings, "exceptions": str(base / exceptions)}
        collectors = data.get("collectors")
        if isinstance(collectors, dict):
            for key in ("ca_file", "vulnerable_versions", "web_hidden_link_keywords", "web_sensitive_keywords"):
                value = collectors.get(key)
                if isinstance(value, str) and not Path(value).is_absolute():
                    collectors = {**collectors, key: str(base / value)}
            data["collectors"] = collectors
        if isinstance(data.get("rules"), list):
            data["rules"] = [
                str(base / r) if isinstance(r, str) and not Path(r).is_absolute() else r for r in data["rules"]
            ]
    data = _deep_merge(data, _env_overrides(os.environ if environ is None else environ))
    data = _deep_merge(data, {k: v for k, v in (flags or {}).items() if v is not None})
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_problems(exc, raw, source)) from None
