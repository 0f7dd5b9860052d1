"""Where the anomaly engine keeps its memory: in memory (tests, benchmarks) or in the store (restarts keep it)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sentinel.engine.state_schema import ENGINE_STATE_COMPONENT

if TYPE_CHECKING:  # the engine needs only the store's methods
    from sentinel.store import SqliteStore

StateKey = tuple[str, str, str]  # (rule_id, system_id, target)
State = dict[str, Any]


class StateBackend(Protocol):
    def load(self) -> dict[StateKey, State]: ...

    def save(self, items: Mapping[StateKey, State], now: datetime) -> None: ...


class MemoryState:
    """Keeps nothing across processes; for tests, fixtures and the benchmark."""

    def __init__(self) -> None:
        self.saved: dict[StateKey, State] = {}

    def load(self) -> dict[StateKey, State]:
        """A deep copy, as a fresh process would read it back (so tests can simulate a restart)."""
        return {k: json.loads(json.dumps(v, default=str)) for k, v in self.saved.items()}

    def save(self, items: Mapping[StateKey, State], now: datetime) -> None:
        self.saved.update(items)


def ensure_schema(store: SqliteStore) -> None:
    """Apply the `engine_state` component through the store's migration loop (a no-op when it is current)."""
    store.install(ENGINE_STATE_COMPONENT)


class StoreState:
    """Engine state in the store's `engine_state` table, written in the sweep's transaction."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        ensure_schema(store)

    def load(self) -> dict[StateKey, State]:
        rows = self.store.connection.execute("SELECT rule_id, system_id, target, state FROM engine_state")
        out: dict[StateKey, State] = {}
        for rule_id, system_id, target, blob in rows:
            try:
                value = json.loads(blob)
            except json.JSONDecodeError:
                continue  # a damaged row only costs that key its memory; it relearns
            if isinstance(value, dict):
                out[(rule_id, system_id, target)] = value
        return out

    def save(self, items: Mapping[StateKey, State], now: datetime) -> None:
        stamp = now.astimezone(UTC).isoformat()
        with self.store.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO engine_state (rule_id, system_id, target, state, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(*key, json.dumps(value, ensure_ascii=False, default=str), stamp) for key, value in items.items()],
            )

    def forget(self, rule_ids: Iterable[str]) -> None:
        """Drop the memory of rules (e.g. after their definition changed meaning)."""
        ids = list(rule_ids)
        with self.store.transaction() as db:
            db.executemany("DELETE FROM engine_state WHERE rule_id = ?", [(i,) for i in ids])
