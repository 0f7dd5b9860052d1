"""What `/metrics` reports, read through the store's typed read methods (aggregated in SQL there, so a scrape of a
large estate stays cheap).

Every read groups by system id (and probe, severity...): labels stay bounded, and no URL, address or error text
ever leaves the store's read models.
"""

from __future__ import annotations

from sentinel.store import SqliteStore
from sentinel.store.reads import FindingCount, ProbeState, StoreSnapshot, SweepState

__all__ = ["FindingCount", "ProbeState", "StoreSnapshot", "SweepState", "read_snapshot"]


def read_snapshot(store: SqliteStore) -> StoreSnapshot:
    """One consistent read: a sweep committing mid-scrape cannot mix two sweeps into one exposition."""
    return store.metrics_snapshot()
