"""Prometheus exposition of the store: `/metrics` (read at scrape time) and a blackbox-compatible `/probe`."""

from sentinel.exporter.collector import StoreCollector, StoreExporter, build_registry
from sentinel.exporter.server import DEFAULT_LISTEN, ExporterServer, parse_listen, start_server

__all__ = [
    "DEFAULT_LISTEN",
    "ExporterServer",
    "StoreCollector",
    "StoreExporter",
    "build_registry",
    "parse_listen",
    "start_server",
]
