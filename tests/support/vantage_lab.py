"""Several Sentinel instances (sites, vantage points) probing the same loopback services, each with its own store.

`listening()` opens a real listener on loopback; `lab_registry()` declares it as a management port that should
answer only from inside (`reachable_from: [internal]`), next to a declared port nobody listens on (a finding every
vantage sees); `instance()` is a composition with its own store, site and vantage, probing with `tcp_ports` alone
(connect scans, no high-risk list: only the declared ports are touched).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sentinel.app import Sentinel
from sentinel.config.settings import Settings
from sentinel.models import Vantage
from sentinel.registry.loader import load_registry_text
from sentinel.registry.models import Registry

HOST = "127.0.0.1"
SYSTEM = "district-permits"


@contextmanager
def listening() -> Iterator[int]:
    """A port on loopback that accepts connections (the kernel completes the handshakes) until the block ends."""
    with socket.socket() as server:
        server.bind((HOST, 0))
        server.listen(64)
        yield int(server.getsockname()[1])


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released: the kernel answers it with a reset)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def lab_registry(management: int, silent: int) -> Registry:
    return load_registry_text(
        f"""
scope: {{allow: ["127.0.0.0/8"]}}
systems:
  - id: {SYSTEM}
    name: 区行政审批系统
    owner: {{department: 区行政审批局}}
    tier: district
    mlps_level: 3
    endpoints:
      - {{host: {HOST}, ports: [{management}], reachable_from: [internal], name: management console}}
      - {{host: {HOST}, ports: [{silent}], name: public service}}
"""
    )


def instance(
    folder: Path, registry: Registry, site: str, vantage: Vantage, sinks: dict[str, dict[str, Any]] | None = None
) -> Sentinel:
    settings = Settings(
        store=folder / f"{site}-{vantage.value}.db",
        site=site,
        vantage=vantage,
        collectors={
            "probes": ["tcp_ports"],
            "scan_method": "connect",
            "per_target_rate": 200,
            "per_target_burst": 200,
            "connect_timeout": 1.0,
            "retries": 0,
            "tcp_ports": {"high_risk_ports": []},
        },
        sinks=sinks or {},
    )
    return Sentinel(settings, registry=registry, ship_inline=False)
