"""Prometheus exposition of the store: `/metrics` (read at scrape time) and a blackbox-compatible `/probe`,
both served by the one HTTP listener (`sentinel/web/listener.py`)."""

from sentinel.exporter.collector import StoreCollector, StoreExporter, build_registry

__all__ = ["StoreCollector", "StoreExporter", "build_registry"]
