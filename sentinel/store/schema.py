"""Schema components and the one migration loop every component goes through.

A component is a name and an append-only list of migrations (each a list of SQL statements). The store
records in `schema_versions` how many of each component's migrations have run. The composition root
hands the store every component it needs; the store itself knows only its core tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sentinel.errors import StoreError

VERSIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"


@dataclass(frozen=True)
class SchemaComponent:
    """`requires`: components whose tables this one's migrations read (they are applied first)."""

    name: str
    migrations: Sequence[Sequence[str]]
    requires: tuple[SchemaComponent, ...] = ()


def ordered(components: Iterable[SchemaComponent]) -> list[SchemaComponent]:
    """Components with their requirements first, each once (by name)."""
    out: dict[str, SchemaComponent] = {}

    def add(c: SchemaComponent) -> None:
        if c.name in out:
            return
        for r in c.requires:
            add(r)
        out[c.name] = c

    for component in components:
        add(component)
    return list(out.values())


def migrate(db: sqlite3.Connection, components: Iterable[SchemaComponent], where: str) -> None:
    """Bring each component up to date, one migration per transaction (joining an open one)."""
    db.execute(VERSIONS_TABLE)
    for component in ordered(components):
        row = db.execute("SELECT version FROM schema_versions WHERE component = ?", (component.name,)).fetchone()
        version = int(row[0]) if row else 0
        if version > len(component.migrations):
            raise StoreError(
                f"{where}: schema '{component.name}' is at version {version}, newer than this Sentinel supports "
                f"({len(component.migrations)}); upgrade Sentinel"
            )
        for number, statements in enumerate(component.migrations[version:], start=version + 1):
            outer = db.in_transaction
            if not outer:
                db.execute("BEGIN IMMEDIATE")
            try:
                for statement in statements:
                    db.execute(statement)
                db.execute(
                    "INSERT OR REPLACE INTO schema_versions (component, version) VALUES (?, ?)",
                    (component.name, number),
                )
            except BaseException:
                if not outer and db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if not outer:
                db.execute("COMMIT")
