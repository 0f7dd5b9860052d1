"""`run:` and `serve:` in sentinel.yaml."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr


def _run_only_probes() -> list[str]:
    """The built-in probes whose `schedule` is "run" (looked up when settings are built, not at import)."""
    from sentinel.config.settings import run_only_probes

    return run_only_probes()


class SniffSettings(BaseModel):
    """Live traffic analysis inside `sentinel run`, in windows of `window` seconds (memory bounded per window)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    iface: str = Field(min_length=1)
    bpf: str | None = None
    window: float = Field(default=60.0, ge=5, le=3600)


class RunSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: seconds between two sweeps of one probe over the whole registry
    intervals: dict[str, float] = Field(
        default_factory=lambda: {
            "tcp_ports": 900.0,
            "http": 300.0,
            "tls": 3600.0,
            "tls_scan": 86400.0,
            "icmp": 300.0,
            "port_discovery": 86400.0,
        }
    )
    #: probes the monitor runs besides `collectors.probes`: sweeps too long for a plain `sentinel scan`
    #: (the daily top-1,000-port discovery) but scheduled on their own interval here; default: every
    #: built-in probe that declares `schedule = "run"`
    extra_probes: list[str] = Field(default_factory=_run_only_probes)
    default_interval: float = Field(default=900.0, ge=5)
    #: each interval is cut into slices of about this many seconds, so a sweep is spread, not a burst
    slice_seconds: float = Field(default=30.0, ge=1)
    #: random extra delay, as a fraction of the slice, so instances and probes do not align
    jitter: float = Field(default=0.1, ge=0, le=1)
    notify_every: float = Field(default=300.0, ge=5)
    #: seconds between two reads of the other sites' early warnings from the shared Elasticsearch cluster
    #: (when `sinks.elasticsearch` is configured); 0: never (`sentinel advisory sync` by hand)
    advisory_sync_every: float = Field(default=300.0, ge=0)
    ship_every: float = Field(default=10.0, ge=1)
    reload_check_every: float = Field(default=5.0, ge=1)
    shutdown_grace: float = Field(default=25.0, ge=1, le=29)
    sniff: SniffSettings | None = None


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    listen: str = "127.0.0.1:9108"
    #: when set, /metrics and /probe need `Authorization: Bearer TOKEN` (they show every department's systems)
    metrics_token: SecretStr | None = None
