"""The embedded store: SQLite in WAL mode, versioned schema, the source of truth for findings."""

from __future__ import annotations

import json
import shlex
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sentinel.errors import CorruptStoreError, StoreError
from sentinel.models import Finding, FindingStatus, Observation, Observer, Severity, Vantage
from sentinel.models.finding import ACTIVE_STATUSES, fingerprint
from sentinel.store.migrations import CORE_COMPONENT, FINDING_EVENTS_NO_UPDATE
from sentinel.store.reads import (
    CaptureWindow,
    FindingCount,
    ObservationRow,
    ProbeState,
    StoreSnapshot,
    SweepState,
    timestamp,
)
from sentinel.store.schema import SchemaComponent, migrate

#: observation kinds that say whether a system answered (availability), and the error kinds that mean "it did not"
REACHABILITY_KINDS = ("host", "http", "icmp")
UNREACHABLE_ERRORS = frozenset({"timeout", "connect", "refused", "dns", "network"})
_ACTIVE_SQL = "(" + ",".join(f"'{s.value}'" for s in ACTIVE_STATUSES) + ")"
_SEVERITY_RANK_SQL = "CASE severity " + " ".join(f"WHEN '{s.value}' THEN {s.rank}" for s in Severity) + " ELSE -1 END"


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# SQLite's primary result codes for a damaged file and for a file that is no database at all (sqlite3 raises
# both as a bare DatabaseError, which nothing above the store would map to a message)
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def damaged(path: str, exc: sqlite3.DatabaseError) -> CorruptStoreError | None:
    """The error to raise when `exc` says the store file is damaged or not a database; None for other errors."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
    if code == _SQLITE_NOTADB:
        return CorruptStoreError(
            f"{path}: not an SQLite database ({exc}), so not a Sentinel store; nothing was written to it. Name the "
            "store with --store or 'store:' in the config, or restore the file from a backup"
        )
    if code == _SQLITE_CORRUPT:
        return corrupt(path, str(exc))
    return None


def corrupt(path: str, detail: str) -> CorruptStoreError:
    return CorruptStoreError(
        f"{path}: the store is damaged ({detail}); Sentinel will neither read nor write it. Restore it from a "
        f"backup, or see what is damaged with: sqlite3 {shlex.quote(path)} 'PRAGMA integrity_check'"
    )


def check_intact(db: sqlite3.Connection, path: str) -> None:
    """Refuse a damaged store before anything writes to it: SQLite writing into a corrupt b-tree spreads the
    damage. `quick_check` walks every page (about 0.1 s per 100 MB) but not index-to-table agreement."""
    rows = db.execute("PRAGMA quick_check(1)").fetchall()
    if rows and rows[0][0] != "ok":
        raise corrupt(path, " ".join(str(rows[0][0]).removeprefix("*** in database main ***").split())[:300])


_FINDING_COLUMNS = (
    "id, rule_id, title, severity, category, system_id, target, status, first_seen, last_seen, occurrences,"
    " evidence, controls, remediation, status_reason, status_by, suppressed_until, resolved_at, regression,"
    " stale_since, planned_fix, site, vantage"
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
        _ts(f.planned_fix),
        f.site,
        f.vantage.value if f.vantage is not None else "",
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
        planned_fix=_dt(row["planned_fix"]),
        site=row["site"],
        vantage=Vantage(row["vantage"]) if row["vantage"] else None,  # '': recorded before sites, not yet adopted
    )


@dataclass(frozen=True)
class FindingQuery:
    """A filter over findings, turned into SQL so pages read only the rows they show."""

    statuses: Sequence[FindingStatus] | None = None
    min_severity: Severity | None = None
    severities: Sequence[Severity] | None = None
    system_ids: Sequence[str] | None = None
    rule_ids: Sequence[str] | None = None
    categories: Sequence[str] | None = None
    text: str | None = None
    first_seen_after: datetime | None = None
    first_seen_before: datetime | None = None
    #: overdue: active and first seen before the severity's deadline (severity -> first_seen cut-off)
    overdue_cutoffs: dict[Severity, datetime] | None = None
    stale: bool | None = None
    sites: Sequence[str] | None = None
    vantages: Sequence[Vantage] | None = None

    def where(self) -> tuple[str, list[Any]]:
        where: list[str] = []
        args: list[Any] = []

        def among(column: str, values: Sequence[Any]) -> None:
            where.append(f"{column} IN ({','.join('?' * len(values))})" if values else "0")
            args.extend(values)

        if self.statuses is not None:
            among("status", [s.value for s in self.statuses])
        if self.min_severity is not None:
            among("severity", [s.value for s in Severity if s.at_least(self.min_severity)])
        if self.severities is not None:
            among("severity", [s.value for s in self.severities])
        if self.system_ids is not None:
            among("system_id", list(self.system_ids))
        if self.rule_ids is not None:
            among("rule_id", list(self.rule_ids))
        if self.categories is not None:
            among("category", list(self.categories))
        if self.sites is not None:
            among("site", list(self.sites))
        if self.vantages is not None:
            among("vantage", [v.value for v in self.vantages])
        if self.text:
            needle = "%" + self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(title LIKE ? ESCAPE '\\' OR target LIKE ? ESCAPE '\\' OR rule_id LIKE ? ESCAPE '\\')")
            args.extend([needle] * 3)
        if self.first_seen_after is not None:
            where.append("first_seen >= ?")
            args.append(_ts(self.first_seen_after))
        if self.first_seen_before is not None:
            where.append("first_seen < ?")
            args.append(_ts(self.first_seen_before))
        if self.overdue_cutoffs is not None:
            late = [(sev.value, _ts(cut)) for sev, cut in self.overdue_cutoffs.items()]
            where.append(f"status IN {_ACTIVE_SQL}")
            where.append("(" + " OR ".join("(severity = ? AND first_seen < ?)" for _ in late) + ")" if late else "0")
            args.extend(v for pair in late for v in pair)
        if self.stale is not None:
            where.append("stale_since IS NOT NULL" if self.stale else "stale_since IS NULL")
        return (" WHERE " + " AND ".join(where) if where else ""), args


# -- read models for /metrics (aggregated in SQL, so a scrape of a large estate stays cheap) -------------------
# A probe succeeded when it could observe: no error observation. A closed port, even a high-risk one nobody
# declared, is a successful observation (issue 11: reading it as a failure made every healthy system alert).
_SUCCESS = "CASE WHEN status = 'ok' THEN 1 ELSE 0 END"
# Whether what the owner expects answered: observed, reachable, the page opened (no 4xx/5xx), declared ports
# open. Observations about ports nobody declared (the high-risk list the exposure and banner probes try) say
# nothing about reachability. Field-based, so probes added later follow the same reading without changes here.
_REACHABLE = """CASE
    WHEN status != 'ok' THEN 0
    WHEN json_extract(data, '$.declared') = 0 THEN 1
    WHEN json_extract(data, '$.reachable') = 0 THEN 0
    WHEN json_extract(data, '$.available') = 0 THEN 0
    WHEN json_extract(data, '$.declared') = 1 AND json_extract(data, '$.state') != 'open' THEN 0
    ELSE 1 END"""
# Probes report their timing under different names; the slowest answer stands for the probe's duration.
_LATENCY_MS = "COALESCE(json_extract(data, '$.latency_ms'), json_extract(data, '$.rtt_ms'))"
_PROBES_SQL = f"""SELECT system_id, probe, MIN({_SUCCESS}), MIN({_REACHABLE}), MAX({_LATENCY_MS}), MAX(observed_at),
    COUNT(*) FROM observations_latest GROUP BY system_id, probe"""
_CERTS_SQL = """SELECT system_id, MIN(json_extract(data, '$."cert.not_after"')) FROM observations_latest
    WHERE kind = 'tls' AND status = 'ok' AND json_extract(data, '$."cert.not_after"') IS NOT NULL
    GROUP BY system_id"""
_CAPTURES_SQL = """SELECT target, observed_at, json_extract(data, '$."capture.received"'),
    json_extract(data, '$."capture.dropped"') FROM observations_latest WHERE kind = 'traffic.capture'"""
_FINDING_COUNTS_SQL = f"""SELECT system_id, severity, category, status, COUNT(*) FROM findings
    WHERE status IN {_ACTIVE_SQL} GROUP BY system_id, severity, category, status"""


def observations_about(
    db: sqlite3.Connection, system_id: str, targets: Sequence[str], kinds: Sequence[str] | None = None
) -> list[ObservationRow]:
    """`SqliteStore.observations_about` over a bare connection (for callers that hold only the connection)."""
    sql = (
        "SELECT kind, target, observed_at, status, data, site, vantage FROM observations_latest"
        f" WHERE (system_id = ? OR target IN ({','.join('?' * len(targets))}))"
    )
    args: list[str] = [system_id, *targets]
    if kinds is not None:
        sql += f" AND kind IN ({','.join('?' * len(kinds))})"
        args.extend(kinds)
    return [ObservationRow(*r) for r in db.execute(sql + " ORDER BY kind, target", args)]


#: Called inside the transaction that writes findings or observations: (connection, what, items). `what` is
#: "findings", "observations", "rekeyed" ((former id, finding) pairs adopted by `claim_identity`) or what a later
#: stage `publish`es. This is how a transactional outbox queues exactly what was recorded, atomically with it.
WriteHook = Callable[[sqlite3.Connection, str, Sequence[Any]], None]


class SqliteStore:
    """All reads and writes of the embedded store go through this class."""

    #: the recorded site and vantage, once read (a recorded identity never changes: see `claim_identity`)
    _identity: Observer | None = None

    def __init__(self, path: Path | str, components: Sequence[SchemaComponent] = ()) -> None:
        """`components`: the schema components of the stages that will use this store (besides `core`)."""
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
            if self.path != ":memory:":
                check_intact(self._db, self.path)  # first: the journal mode and the migrations below write
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            migrate(self._db, [CORE_COMPONENT, *components], self.path)
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise damaged(self.path, exc) or StoreError(f"{self.path}: cannot open the store: {exc}") from None
        except StoreError:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    # -- schema -------------------------------------------------------------------------------
    def install(self, *components: SchemaComponent) -> None:
        """Apply components not yet (fully) applied: the same loop the constructor runs, a no-op when current.

        For a stage handed a store opened without its component (a bare `SqliteStore(path)` in a tool or test)."""
        try:
            migrate(self._db, components, self.path)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.path}: migration failed: {exc}") from None

    def schema_version(self, component: str = "core") -> int:
        row = self._db.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
        return int(row[0]) if row else 0

    def add_write_hook(self, hook: WriteHook) -> None:
        """Register a hook run in the same transaction as every findings/observations write."""
        self._write_hooks.append(hook)

    def _run_hooks(self, what: str, items: Sequence[Any]) -> None:
        for hook in self._write_hooks:
            hook(self._db, what, items)

    def publish(self, what: str, items: Sequence[Any]) -> None:
        """Hand what a later stage wrote to its own tables (early warnings) to the write hooks, inside the caller's
        open transaction, so the outbox queues it atomically with the write, as for findings."""
        if not self._db.in_transaction:
            raise RuntimeError("publish() belongs inside store.transaction()")
        self._run_hooks(what, items)

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
        except sqlite3.DatabaseError as exc:  # damage quick_check cannot see (an index that disagrees with its table)
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            found = damaged(self.path, exc)
            if found is None:
                raise
            raise found from None
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    # -- whose observations (issue 14) --------------------------------------------------------
    def identity(self) -> Observer | None:
        """The site and vantage whose observations this store holds; None until an instance has recorded them."""
        if self._identity is None:
            row = self._db.execute("SELECT site, vantage FROM store_identity").fetchone()
            if row is not None:
                self._identity = Observer(row[0], Vantage(row[1]))
        return self._identity

    def claim_identity(self, observer: Observer, at: datetime) -> list[tuple[str, Finding]]:
        """Record that this store holds what `observer` sees (done by an instance's ingest, the first time) and
        adopt what was recorded before sites: those findings and latest observations take its site and vantage,
        each finding the id that goes with them, its history and notification-ledger rows following, all in one
        transaction (write hooks see it as "rekeyed": (former id, finding) pairs, which this returns too).

        StoreError when the store already holds another site's or vantage's observations: one store, one observer,
        or findings seen from one vantage would never be resolved by the other's sweeps."""
        if self._identity == observer:  # recorded: nothing left to adopt
            return []
        with self.transaction() as db:
            row = db.execute("SELECT site, vantage FROM store_identity").fetchone()
            if row is not None:
                recorded = Observer(row[0], Vantage(row[1]))
                if recorded != observer:
                    raise StoreError(
                        f"{self.path}: this store holds what site '{recorded.site}' observed from vantage "
                        f"'{recorded.vantage}', but the settings say site '{observer.site}', vantage "
                        f"'{observer.vantage}'; every site and vantage keeps a store of its own: set 'store:' to "
                        "another file, or 'site:' and 'vantage:' back"
                    )
                self._identity = recorded
                return []
            legacy = [
                _finding_from(r) for r in db.execute(f"SELECT {_FINDING_COLUMNS} FROM findings WHERE vantage = ''")
            ]
            pairs: list[tuple[str, Finding]] = []
            for f in legacy:
                former = f.id
                f.id = fingerprint(f.rule_id, f.system_id, f.target, observer.vantage)
                f.site, f.vantage = observer.site, observer.vantage
                pairs.append((former, f))
            if pairs:
                self._run_hooks("rekeyed", pairs)
                db.executemany(
                    "UPDATE findings SET id = ?, site = ?, vantage = ? WHERE id = ?",
                    [(f.id, f.site, observer.vantage.value, former) for former, f in pairs],
                )
                moved = [(f.id, former) for former, f in pairs]
                db.execute("DROP TRIGGER finding_events_no_update")
                db.executemany("UPDATE finding_events SET finding_id = ? WHERE finding_id = ?", moved)
                db.execute(FINDING_EVENTS_NO_UPDATE)
                # the notification ledger keys what it told by finding id: moved too, so nobody is told again
                if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'notify_sent'").fetchone():
                    db.executemany(
                        "UPDATE notify_sent SET finding_id = ?, event_key = replace(event_key, ?, ?)"
                        " WHERE finding_id = ?",
                        [(new, f":{former}:", f":{new}:", former) for new, former in moved],
                    )
                db.executemany(
                    "INSERT INTO finding_events (finding_id, at, actor, from_status, to_status, reason)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (
                            f.id,
                            _ts(at),
                            "sentinel",
                            f.status.value,
                            f.status.value,
                            f"recorded before sites: now site {observer.site}, vantage {observer.vantage} "
                            f"(former id {former})",
                        )
                        for former, f in pairs
                    ],
                )
            db.execute(
                "UPDATE observations_latest SET site = ?, vantage = ? WHERE vantage = ''",
                (observer.site, observer.vantage.value),
            )
            db.execute(
                "INSERT INTO store_identity (singleton, site, vantage, recorded_at) VALUES (1, ?, ?, ?)",
                (observer.site, observer.vantage.value, _ts(at)),
            )
        self._identity = observer
        return pairs

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

    def save_findings(self, findings: Iterable[Finding], at: datetime | None = None) -> None:
        """Write findings; `at` (default: now) is the day whose active-findings snapshot they update."""
        items = list(findings)
        with self.transaction() as db:
            self._run_hooks("findings", items)
            db.executemany(
                f"INSERT OR REPLACE INTO findings ({_FINDING_COLUMNS}) VALUES ({','.join('?' * 23)})",
                [_finding_row(f) for f in items],
            )
            if items:
                self._snapshot_active(db, {f.system_id for f in items}, at or datetime.now(UTC))

    def _snapshot_active(self, db: sqlite3.Connection, system_ids: set[str], at: datetime) -> None:
        """Keep `findings_daily` current: the day's first write snapshots every system (so untouched ones carry
        over to the new day), later writes only the systems they touched."""
        day = at.astimezone(UTC).date().isoformat()
        if db.execute("SELECT 1 FROM findings_daily WHERE day = ? LIMIT 1", (day,)).fetchone() is None:
            db.execute(
                "INSERT OR REPLACE INTO findings_daily (day, system_id, severity, active)"
                f" SELECT ?, system_id, severity, COUNT(*) FROM findings WHERE status IN {_ACTIVE_SQL}"
                " GROUP BY system_id, severity",
                (day,),
            )
            return
        ids = sorted(system_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM findings_daily WHERE day = ? AND system_id IN ({marks})", [day, *chunk])
            db.execute(
                "INSERT INTO findings_daily (day, system_id, severity, active)"
                f" SELECT ?, system_id, severity, COUNT(*) FROM findings WHERE status IN {_ACTIVE_SQL}"
                f" AND system_id IN ({marks}) GROUP BY system_id, severity",
                [day, *chunk],
            )

    # -- read models for the web view (aggregates in SQL: 30,000 findings are never all loaded) -------------
    def query_findings(
        self, query: FindingQuery, limit: int | None = None, offset: int = 0, order: str = "severity"
    ) -> list[Finding]:
        where, args = query.where()
        orders = {
            "severity": f"{_SEVERITY_RANK_SQL} DESC, first_seen DESC, id",
            "newest": "first_seen DESC, id",
            "oldest": "first_seen, id",
            "last_seen": "last_seen DESC, id",
        }
        sql = f"SELECT {_FINDING_COLUMNS} FROM findings{where} ORDER BY {orders.get(order, orders['severity'])}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args = [*args, limit, max(offset, 0)]
        return [_finding_from(r) for r in self._db.execute(sql, args)]

    def count_findings(self, query: FindingQuery) -> int:
        where, args = query.where()
        return int(self._db.execute(f"SELECT COUNT(*) FROM findings{where}", args).fetchone()[0])

    def finding_counts(self, query: FindingQuery, *columns: str) -> list[tuple[Any, ...]]:
        """COUNT(*) grouped by the given columns (system_id, severity, status, rule_id, category, site, vantage)."""
        allowed = {"system_id", "severity", "status", "rule_id", "category", "site", "vantage"}
        if not columns or not set(columns) <= allowed:
            raise ValueError(f"group by one or more of {sorted(allowed)}")
        where, args = query.where()
        cols = ", ".join(columns)
        return [
            tuple(r) for r in self._db.execute(f"SELECT {cols}, COUNT(*) FROM findings{where} GROUP BY {cols}", args)
        ]

    def rule_ids(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT rule_id FROM findings ORDER BY rule_id")]

    def events_for(self, finding_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """The audit trail of several findings in one read."""
        out: dict[str, list[dict[str, Any]]] = {fid: [] for fid in finding_ids}
        ids = list(finding_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._db.execute(
                "SELECT finding_id, at, actor, from_status, to_status, reason FROM finding_events"
                f" WHERE finding_id IN ({','.join('?' * len(chunk))}) ORDER BY seq",
                chunk,
            )
            for r in rows:
                out[r["finding_id"]].append({k: r[k] for k in ("at", "actor", "from_status", "to_status", "reason")})
        return out

    def reopened_since(self, since: datetime) -> list[tuple[str, str, str, str]]:
        """(finding_id, system_id, rule_id, category) of findings that came back (resolved → open) since `since`."""
        rows = self._db.execute(
            "SELECT f.id, f.system_id, f.rule_id, f.category FROM finding_events e"
            " JOIN findings f ON f.id = e.finding_id"
            " WHERE e.at >= ? AND e.from_status = 'resolved' AND e.to_status = 'open'",
            (_ts(since),),
        )
        return [tuple(r) for r in rows]

    def active_trend(self, since: datetime, system_ids: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
        """Active findings per day and severity, from the daily snapshots (day -> severity -> count)."""
        sql = "SELECT day, severity, SUM(active) FROM findings_daily WHERE day >= ?"
        args: list[Any] = [since.astimezone(UTC).date().isoformat()]
        if system_ids is not None:
            ids = list(system_ids)
            sql += f" AND system_id IN ({','.join('?' * len(ids))})" if ids else " AND 0"
            args.extend(ids)
        out: dict[str, dict[str, int]] = {}
        for day, severity, n in self._db.execute(sql + " GROUP BY day, severity", args):
            out.setdefault(day, {})[severity] = int(n)
        return out

    def reachability(self) -> dict[str, tuple[bool, bool]]:
        """Per system, from the latest reachability observations: (anything answered, anything failed to)."""
        rows = self._db.execute(
            "SELECT system_id, MAX(r), MIN(r) FROM (SELECT system_id, json_extract(data, '$.reachable') AS r"
            f" FROM observations_latest WHERE kind IN ({','.join('?' * len(REACHABILITY_KINDS))}))"
            " WHERE r IS NOT NULL GROUP BY system_id",
            REACHABILITY_KINDS,
        )
        return {sid: (bool(hi), not bool(lo)) for sid, hi, lo in rows}

    def certificates_expiring(self, within_days: float) -> list[dict[str, Any]]:
        """TLS endpoints whose latest observation says the certificate expires within `within_days` (or has)."""
        rows = self._db.execute(
            "SELECT system_id, target, observed_at, json_extract(data, '$.\"cert.days_to_expiry\"') AS days,"
            " json_extract(data, '$.\"cert.not_after\"') AS not_after FROM observations_latest"
            " WHERE kind = 'tls' AND status = 'ok' AND days IS NOT NULL AND days < ? ORDER BY days",
            (within_days,),
        )
        return [dict(r) for r in rows]

    def probe_freshness(self) -> list[dict[str, Any]]:
        """When each probe last observed anything, over how many targets, and how many of those are errors."""
        rows = self._db.execute(
            "SELECT probe, MAX(observed_at) AS last, MIN(observed_at) AS oldest, COUNT(*) AS targets,"
            " SUM(status != 'ok') AS errors FROM observations_latest GROUP BY probe ORDER BY probe"
        )
        return [dict(r) for r in rows]

    def availability(self, since: datetime) -> dict[str, tuple[int, int]]:
        """Per system: (successful, all) reachability observations since `since`: by the hour for the last two
        days, by the (UTC) day beyond that."""
        since = since.astimezone(UTC)
        if since >= datetime.now(UTC) - timedelta(days=1, hours=23):
            sql = "SELECT system_id, SUM(ok), SUM(total) FROM availability_hourly WHERE hour >= ? GROUP BY system_id"
            key = since.strftime("%Y-%m-%dT%H")
        else:
            sql = "SELECT system_id, SUM(ok), SUM(total) FROM availability_daily WHERE day >= ? GROUP BY system_id"
            key = since.date().isoformat()
        return {sid: (int(ok), int(total)) for sid, ok, total in self._db.execute(sql, (key,))}

    # -- read models for /metrics and /probe -------------------------------------------------------------------
    def probe_states(self) -> list[ProbeState]:
        """Per system and probe: could it observe, did what the owner declared answer, how long, when."""
        return [
            ProbeState(
                system_id=sid,
                probe=probe,
                success=bool(ok),
                duration_seconds=None if latency is None else round(float(latency) / 1000.0, 6),
                observed_at=timestamp(observed),
                observations=int(count),
                reachable=bool(reachable),
            )
            for sid, probe, ok, reachable, latency, observed, count in self._db.execute(_PROBES_SQL)
        ]

    def cert_expiry(self) -> dict[str, float]:
        """Per system, the earliest `cert.not_after` of its latest TLS observations (epoch seconds)."""
        out: dict[str, float] = {}
        for sid, not_after in self._db.execute(_CERTS_SQL):
            ts = timestamp(not_after)
            if ts is not None:
                out[sid] = ts
        return out

    def capture_windows(self) -> list[CaptureWindow]:
        """Per interface, the kernel's counts of the latest live-capture window (`traffic.capture`)."""
        out = []
        for target, observed, received, dropped in self._db.execute(_CAPTURES_SQL):
            interface = str(target).removeprefix("capture ")
            out.append(CaptureWindow(interface, int(received or 0), int(dropped or 0), timestamp(observed)))
        return out

    def active_finding_counts(self) -> list[FindingCount]:
        return [FindingCount(*row) for row in self._db.execute(_FINDING_COUNTS_SQL)]

    def sweep_totals(self) -> SweepState:
        db = self._db
        finished, started = db.execute(
            "SELECT COUNT(finished_at), COUNT(*) FROM sweeps WHERE source = 'sweep'"
        ).fetchone()
        last_started = db.execute("SELECT MAX(started_at) FROM sweeps WHERE source = 'sweep'").fetchone()[0]
        row = db.execute(
            "SELECT started_at, finished_at, summary FROM sweeps WHERE finished_at IS NOT NULL AND source = 'sweep'"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return SweepState(int(finished), int(started), last_started=timestamp(last_started))
        start, end = timestamp(row[0]), timestamp(row[1])
        try:
            summary = json.loads(row[2] or "{}")
        except json.JSONDecodeError:
            summary = {}
        if not isinstance(summary, dict):
            summary = {}
        observations, errors = summary.get("observations"), summary.get("errors")
        return SweepState(
            finished_total=int(finished),
            started_total=int(started),
            last_started=timestamp(last_started),
            last_success=end,
            last_duration_seconds=None if start is None or end is None else max(end - start, 0.0),
            last_observations=observations if isinstance(observations, int) else None,
            last_errors=errors if isinstance(errors, int) else None,
        )

    def metrics_snapshot(self) -> StoreSnapshot:
        """One consistent read: a sweep committing mid-scrape cannot mix two sweeps into one exposition."""
        started_here = not self._db.in_transaction
        if started_here:
            self._db.execute("BEGIN")
        try:
            return StoreSnapshot(
                probes=self.probe_states(),
                cert_expiry=self.cert_expiry(),
                findings=self.active_finding_counts(),
                sweeps=self.sweep_totals(),
                captures=self.capture_windows(),
            )
        finally:
            if started_here:
                self._db.execute("COMMIT")

    def observations_about(
        self, system_id: str, targets: Sequence[str], kinds: Sequence[str] | None = None
    ) -> list[ObservationRow]:
        """Latest observations of a system (by id) or of any of `targets`, optionally of some kinds only."""
        return observations_about(self._db, system_id, targets, kinds)

    def probes_that_observed(self, system_id: str, target: str, kinds: Sequence[str]) -> list[str]:
        """Probes whose latest observations of (system, target) are of one of `kinds` (what a re-check re-runs)."""
        rows = self._db.execute(
            "SELECT DISTINCT probe FROM observations_latest WHERE system_id = ? AND target = ?"
            f" AND kind IN ({','.join('?' * len(kinds))})",
            (system_id, target, *kinds),
        )
        return [str(r[0]) for r in rows]

    def data_version(self) -> tuple[int, int]:
        """Changes by other connections (`PRAGMA data_version`) and by this one: what caches key on."""
        return int(self._db.execute("PRAGMA data_version").fetchone()[0]), self._db.total_changes

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
        # Each row's `data` is exactly `json.dumps(dict(o.data), ensure_ascii=False, default=str)`, made by one
        # encoder with json.dumps' options for the whole call: json.dumps builds a JSONEncoder and a C encoder
        # per row, which was half of the encoding's cost (a capture's 12,071 observations).
        chunks: Callable[[object, int], Iterable[str]]
        try:
            from _json import make_encoder
        except ImportError:  # no C accelerator: what json.dumps runs then

            def chunks(data: object, _level: int) -> Iterable[str]:
                return json.JSONEncoder(ensure_ascii=False, default=str).iterencode(data)

        else:  # its circular-reference check too (a row that fails ends the call, so one dict serves every row)
            chunks = make_encoder({}, str, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
        join = "".join

        def rows() -> Iterator[tuple[object, ...]]:
            # a generator: each row's JSON is made as SQLite takes it, never a sweep's worth at once
            stamps: dict[int, str | None] = {}  # by identity: a capture's observations share one datetime
            for o in items:  # `items` keeps every datetime alive, so no id is reused meanwhile
                at = stamps.get(id(o.observed_at))
                if at is None:
                    at = stamps[id(o.observed_at)] = _ts(o.observed_at)
                data = o.data
                yield (
                    o.kind,
                    o.system_id,
                    o.target,
                    at,
                    o.probe,
                    o.status._value_,  # the plain value, without the enum's descriptor lookup
                    o.error,
                    join(chunks(data if type(data) is dict else dict(data), 0)),
                    o.site or "",
                    o.vantage._value_ if o.vantage is not None else "",
                )

        with self.transaction() as db:
            self._run_hooks("observations", items)
            db.executemany(
                "INSERT OR REPLACE INTO observations_latest"
                " (kind, system_id, target, observed_at, probe, status, error, data, site, vantage)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                rows(),
            )
            self._count_availability(db, items)

    @staticmethod
    def _count_availability(db: sqlite3.Connection, items: Sequence[Observation]) -> None:
        counts: dict[tuple[str, str], list[int]] = {}
        for o in items:
            if o.kind not in REACHABILITY_KINDS:
                continue
            if o.status.value == "ok":
                ok = o.data.get("reachable", True) is not False
            elif o.data.get("error_kind") in UNREACHABLE_ERRORS:
                ok = False
            else:  # out of scope, circuit open, a probe bug: says nothing about the system
                continue
            key = (o.observed_at.astimezone(UTC).strftime("%Y-%m-%dT%H"), o.system_id)
            pair = counts.setdefault(key, [0, 0])
            pair[0] += int(ok)
            pair[1] += 1
        rows = [(hour, sid, ok, total) for (hour, sid), (ok, total) in counts.items()]
        db.executemany(
            "INSERT INTO availability_hourly (hour, system_id, ok, total) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (hour, system_id) DO UPDATE SET ok = ok + excluded.ok, total = total + excluded.total",
            rows,
        )
        # the same per day: a week is 7 rows per system, not 168
        db.executemany(
            "INSERT INTO availability_daily (day, system_id, ok, total) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (day, system_id) DO UPDATE SET ok = ok + excluded.ok, total = total + excluded.total",
            [(hour[:10], sid, ok, total) for hour, sid, ok, total in rows],
        )
        if rows:  # hours older than two days are only needed as days
            oldest = datetime.fromisoformat(min(h for h, *_ in rows) + ":00:00+00:00") - timedelta(days=2)
            db.execute("DELETE FROM availability_hourly WHERE hour < ?", (oldest.strftime("%Y-%m-%dT%H"),))

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

    def start_sweep(
        self, started_at: datetime, actor: str, config_hash: str, targets: int, source: str = "sweep"
    ) -> int:
        """The audit record written before a sweep sends its first packet (or before a capture file or a live
        window is ingested: `source` says which; only `sweep` records count as sweeps in /metrics)."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO sweeps (started_at, actor, config_hash, planned_jobs, source) VALUES (?, ?, ?, ?, ?)",
                (_ts(started_at), actor, config_hash, targets, "sweep" if source == "sweep" else source[:200]),
            )
            return int(cur.lastrowid or 0)

    def finish_sweep(self, sweep_id: int, finished_at: datetime, summary: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE sweeps SET finished_at = ?, summary = ? WHERE id = ?",
                (_ts(finished_at), json.dumps(summary, ensure_ascii=False), sweep_id),
            )

    def sweep_progress(self, sweep_id: int, done_jobs: int, findings_seen: int, at: datetime) -> None:
        """How far a running sweep is (written by the runner's progress callback, at most every few seconds)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE sweeps SET done_jobs = ?, findings_seen = ?, progress_at = ? WHERE id = ?",
                (done_jobs, findings_seen, _ts(at), sweep_id),
            )

    def running_sweeps(self, now: datetime, heartbeat: timedelta = timedelta(minutes=5)) -> list[dict[str, Any]]:
        """Sweeps that have not finished and reported progress (or started) within `heartbeat`: a process that
        died mid-sweep leaves an unfinished record, which is not shown as running forever."""
        since = _ts(now - heartbeat)
        rows = self._db.execute(
            "SELECT id, started_at, actor, planned_jobs, COALESCE(done_jobs, 0) AS done_jobs,"
            " COALESCE(findings_seen, 0) AS findings_seen, progress_at FROM sweeps"
            " WHERE finished_at IS NULL AND COALESCE(progress_at, started_at) >= ? ORDER BY id",
            (since,),
        )
        return [dict(r) for r in rows]

    def sweeps(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT id, started_at, finished_at, actor, config_hash, planned_jobs, summary, source FROM sweeps"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(r) for r in rows]
