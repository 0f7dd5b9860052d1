"""Store tables of the anomaly engine (schema component `engine_state`): one JSON state per rule × key."""

from __future__ import annotations

from sentinel.store.schema import SchemaComponent

COMPONENT = "engine_state"

ENGINE_STATE: list[list[str]] = [
    # 1: per (rule, system, target) memory: hysteresis counters, learned values, baselines, day counters
    [
        """CREATE TABLE engine_state (
            rule_id TEXT NOT NULL,
            system_id TEXT NOT NULL,
            target TEXT NOT NULL,
            state TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (rule_id, system_id, target)
        )""",
    ],
]

ENGINE_STATE_COMPONENT = SchemaComponent(COMPONENT, ENGINE_STATE)
