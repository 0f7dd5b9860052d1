"""The embedded store (SQLite), Sentinel's source of truth."""

from sentinel.store.sqlite import SqliteStore

__all__ = ["SqliteStore"]
