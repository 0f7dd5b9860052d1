"""The embedded store: SQLite in WAL mode, versioned schema, the source of truth for findings."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sentinel.errors import StoreError
from sentinel.models import Finding, FindingStatus, Observation, Severity
from sentinel.store.migrations import SCHEMAS


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


_FINDING_COLUMNS = (
    "id, rule_id, title, severity, category, system_id, target, status, first_seen, last_seen, occurrences,"
    " evidence, controls, remediation, status_reason, status_by, suppressed_until, resolved_at, regression, stale_since"
)


def _finding_row(f: Finding) -> tuple[Any, ...]:
    return (
        f.id,
        f.rule_id,
        f.title,
        f.severity.value,
        f.category,
        f.system_id,
        f.target,
        f.status.value,
        _ts(f.first_seen),
        _ts(f.last_seen),
        f.occurrences,
        json.dumps(f.evidence, ensure_ascii=False, default=str),
        json.dumps(f.controls, ensure_ascii=False),
        f.remediation,
        f.status_reason,
        f.status_by,
        _ts(f.suppressed_until),
        _ts(f.resolved_at),
        int(f.regression),
        _ts(f.stale_since),
    )


def _finding_from(row: sqlite3.Row) -> Finding:
    return Finding(
        id=row["id"],
        rule_id=row["rule_id"],
        title=row["title"],
        severity=Severity(row["severity"]),
        category=row["category"],
        system_id=row["system_id"],
        target=row["target"],
        status=FindingStatus(row["status"]),
        first_seen=_dt(row["first_seen"]) or datetime.now(UTC),
        last_seen=_dt(row["last_seen"]) or datetime.now(UTC),
        occurrences=row["occurrences"],
        evidence=json.loads(row["evidence"]),
        controls=json.loads(row["controls"]),
        remediation=row["remediation"],
        status_reason=row["status_reason"],
        status_by=row["status_by"],
        suppressed_until=_dt(row["suppressed_until"]),
        resolved_at=_dt(row["resolved_at"]),
        regression=bool(row["regression"]),
        stale_since=_dt(row["stale_since"]),
    )


#: Called inside the transaction that writes findings or observations: (connection, what, items).
#: This is how a transactional outbox queues exactly what was recorded, atomically with it.
WriteHook = Callable[[sqlite3.Connection, str, Sequence[Any]], None]


class SqliteStore:
    """All reads and writes of the embedded store go through this class."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._write_hooks: list[WriteHook] = []
        if self.path != ":memory:":
            parent = Path(self.path).parent
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create folder {parent}: {exc.strerror or exc}") from None
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the store: {exc}") from None

    # -- schema -------------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Bring every schema component up to date; each component keeps its own version."""
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        current = {row[0]: int(row[1]) for row in self._db.execute("SELECT component, version FROM schema_versions")}
        for component, migrations in SCHEMAS.items():
            version = current.get(component, 0)
            if version > len(migrations):
                raise StoreError(
                    f"{self.path}: schema '{component}' is at version {version}, newer than this Sentinel supports "
                    f"({len(migrations)}); upgrade Sentinel"
                )
            for number, statements in enumerate(migrations[version:], start=version + 1):
                with self.transaction():
                    for statement in statements:
                        self._db.execute(statement)
                    self._db.execute(
                        "INSERT OR REPLACE INTO schema_versions (component, version) VALUES (?, ?)", (component, number)
                    )

    def schema_version(self, component: str = "core") -> int:
        row = self._db.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
        return int(row[0]) if row else 0

    def add_write_hook(self, hook: WriteHook) -> None:
        """Register a hook run in the same transaction as every findings/observations write."""
        self._write_hooks.append(hook)

    def _run_hooks(self, what: str, items: Sequence[Any]) -> None:
        for hook in self._write_hooks:
            hook(self._db, what, items)

    @property
    def connection(self) -> sqlite3.Connection:
        """For store extensions in other packages (outbox, engine state); core tables go through methods."""
        return self._db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit; nested use joins the outer transaction."""
        if self._db.in_transaction:
            yield self._db
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: write failed: {exc}") from None
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    # -- findings -----------------------------------------------------------------------------
    def get_finding(self, finding_id: str) -> Finding | None:
        row = self._db.execute(f"SELECT {_FINDING_COLUMNS} FROM findings WHERE id = ?", (finding_id,)).fetchone()
        return _finding_from(row) if row else None

    def findings_by_prefix(self, prefix: str) -> list[Finding]:
        rows = self._db.execute(
            f"SELECT {_FINDING_COLUMNS} FROM findings WHERE id LIKE ? ORDER BY id LIMIT 2", (prefix.lower() + "%",)
        ).fetchall()
        return [_finding_from(r) for r in rows]

    def findings_by_ids(self, ids: Iterable[str]) -> dict[str, Finding]:
        out: dict[str, Finding] = {}
        batch = list(ids)
        for start in range(0, len(batch), 500):
            chunk = batch[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT {_FINDING_COLUMNS} FROM findings WHERE id IN ({marks})", chunk):
                f = _finding_from(row)
                out[f.id] = f
        return out

    def list_findings(
        self,
        statuses: Iterable[FindingStatus] | None = None,
        min_severity: Severity | None = None,
        system_ids: Iterable[str] | None = None,
        rule_ids: Iterable[str] | None = None,
    ) -> list[Finding]:
        where: list[str] = []
        args: list[Any] = []
        if statuses is not None:
            values = [s.value for s in statuses]
            where.append(f"status IN ({','.join('?' * len(values))})")
            args.extend(values)
        if min_severity is not None:
            values = [s.value for s in Severity if s.at_least(min_severity)]
            where.append(f"severity IN ({','.join('?' * len(values))})")
            args.extend(values)
        if system_ids is not None:
            values = list(system_ids)
            where.append(f"system_id IN ({','.join('?' * len(values))})")
            args.extend(values)
        if rule_ids is not None:
            values = list(rule_ids)
            where.append(f"rule_id IN ({','.join('?' * len(values))})")
            args.extend(values)
        sql = f"SELECT {_FINDING_COLUMNS} FROM findings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.execute(sql, args).fetchall()
        found = [_finding_from(r) for r in rows]
        found.sort(key=lambda f: (-f.severity.rank, f.system_id, f.rule_id, f.target))
        return found

    def save_findings(self, findings: Iterable[Finding]) -> None:
        items = list(findings)
        with self.transaction() as db:
            self._run_hooks("findings", items)
            db.executemany(
                f"INSERT OR REPLACE INTO findings ({_FINDING_COLUMNS}) VALUES ({','.join('?' * 20)})",
                [_finding_row(f) for f in items],
            )

    def add_events(self, events: Iterable[tuple[str, datetime, str, str | None, str, str | None]]) -> None:
        """Append lifecycle events: (finding_id, at, actor, from_status, to_status, reason)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO finding_events (finding_id, at, actor, from_status, to_status, reason)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(fid, _ts(at), actor, frm, to, reason) for fid, at, actor, frm, to, reason in events],
            )

    def finding_events(self, finding_id: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT at, actor, from_status, to_status, reason FROM finding_events WHERE finding_id = ? ORDER BY seq",
            (finding_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    # -- observations and sweeps --------------------------------------------------------------
    def save_observations(self, observations: Iterable[Observation]) -> None:
        """Keep the latest observation per (kind, system, target)."""
        items = list(observations)
        with self.transaction() as db:
            self._run_hooks("observations", items)
            db.executemany(
                "INSERT OR REPLACE INTO observations_latest"
                " (kind, system_id, target, observed_at, probe, status, error, data) VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        o.kind,
                        o.system_id,
                        o.target,
                        _ts(o.observed_at),
                        o.probe,
                        o.status.value,
                        o.error,
                        json.dumps(dict(o.data), ensure_ascii=False, default=str),
                    )
                    for o in items
                ],
            )

    def latest_observations(self, system_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT kind, system_id, target, observed_at, probe, status, error, data FROM observations_latest"
        args: tuple[Any, ...] = ()
        if system_id is not None:
            sql += " WHERE system_id = ?"
            args = (system_id,)
        out = []
        for row in self._db.execute(sql + " ORDER BY system_id, kind, target", args):
            item = dict(row)
            item["data"] = json.loads(item["data"])
            out.append(item)
        return out

    def start_sweep(self, started_at: datetime, actor: str, config_hash: str, targets: int) -> int:
        """The audit record written before a sweep sends its first packet."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO sweeps (started_at, actor, config_hash, planned_jobs) VALUES (?, ?, ?, ?)",
                (_ts(started_at), actor, config_hash, targets),
            )
            return int(cur.lastrowid or 0)

    def finish_sweep(self, sweep_id: int, finished_at: datetime, summary: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE sweeps SET finished_at = ?, summary = ? WHERE id = ?",
                (_ts(finished_at), json.dumps(summary, ensure_ascii=False), sweep_id),
            )

    def sweeps(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, started_at, finished_at, actor, config_hash, planned_jobs, summary FROM sweeps"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(r) for r in rows]
