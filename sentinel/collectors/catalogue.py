"""The built-in probes by name, and building the configured ones.

To add a probe: write a `Probe` subclass in its own module and list it in `BUILTIN_PROBES` here. Its own options are
an `Options` model (a `ProbeOptions` subclass) it declares, under `collectors.<name>` in sentinel.yaml; its
`schedule` says whether the default sweep runs it ("sweep"), only `sentinel run` ("run"), or only when listed.
"""

from __future__ import annotations

from sentinel.collectors.banners import BannerProbe
from sentinel.collectors.base import Probe
from sentinel.collectors.dns_probe import DnsProbe
from sentinel.collectors.exposure import ExposureProbe
from sentinel.collectors.http_poll import HttpProbe
from sentinel.collectors.http_security import HttpSecurityProbe
from sentinel.collectors.icmp_probe import IcmpEchoProbe
from sentinel.collectors.port_discovery import PortDiscoveryProbe
from sentinel.collectors.tcp_ports import TcpPortProbe
from sentinel.collectors.tlcp_probe import GmTlsProbe
from sentinel.collectors.tls_cert import TlsProbe
from sentinel.collectors.tls_scan import TlsScanProbe
from sentinel.collectors.web_integrity import WebIntegrityProbe
from sentinel.config.settings import CollectorSettings
from sentinel.errors import InputError, Problem

BUILTIN_PROBES: dict[str, type[Probe]] = {
    p.name: p
    for p in (
        TcpPortProbe,
        IcmpEchoProbe,
        HttpProbe,
        TlsProbe,
        TlsScanProbe,
        BannerProbe,
        ExposureProbe,
        DnsProbe,
        HttpSecurityProbe,
        WebIntegrityProbe,
        PortDiscoveryProbe,
        GmTlsProbe,
    )
}


def build_probes(settings: CollectorSettings, source: str = "settings") -> list[Probe]:
    unknown = [n for n in settings.probes if n not in BUILTIN_PROBES]
    if unknown:
        raise InputError(
            [
                Problem(
                    source,
                    None,
                    f"collectors.probes: unknown probe(s) {', '.join(unknown)} "
                    f"(available: {', '.join(BUILTIN_PROBES)})",
                )
            ]
        )
    return [BUILTIN_PROBES[n](settings) for n in settings.probes]
