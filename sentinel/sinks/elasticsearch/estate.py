"""The city's read side over the shared cluster: every site's latest-state findings, read through the index pattern
(`IndexNames.latest_pattern`, `sentinel-findings-latest-*`), aggregated in Elasticsearch.

Each district's instance ships its own indices (`sentinel-findings-latest-<site>`, one document per finding with
`_id` = site:vantage:finding id); the city reads them all at once. Nothing here pulls a whole index into Python for a
page: summaries are aggregations (`terms` by site with sub-aggregations), lists are pages (`from`/`size`, or
`search_after` past the 10,000-hit window), and whole-estate reads for compliance and reports go page by page.

* `EstateReader(es)`: `summary(scope)`, `findings(scope, filters)`, `rule_findings(rule_id, scope)`,
  `iter_findings(scope, ...)`, `sites(scope)`, `systems(scope)`; `EstateUnavailableError` (a `SentinelError`) when the
  cluster is down or refuses, naming since when.
* `finding_from_document(source)`: a latest-state document back into `sentinel.models.Finding` (site and vantage
  included), so compliance assessment, reports and early-warning progress run over the estate unchanged.
* `EstateFindingSource`: what compliance assessment and reports read of a store (`list_findings`,
  `latest_observations`), answered by the cluster.

Documents from before sites (no `sentinel.site`) are not read: adoption retires them (docs/deployment.md).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, NotFoundError, UnsupportedProductError

from sentinel.errors import InputError, Problem, SentinelError
from sentinel.findings.policy import FindingsSettings
from sentinel.models import Finding, FindingStatus, Severity, Vantage
from sentinel.models.finding import ACTIVE_STATUSES
from sentinel.models.observer import SITE as SITE_SLUG
from sentinel.models.observer import SITE_RULE
from sentinel.sinks.elasticsearch.documents import SEVERITY_NUMBER
from sentinel.sinks.elasticsearch.settings import ElasticsearchSettings, mask_url
from sentinel.sinks.elasticsearch.templates import IndexNames
from sentinel.sinks.settings import SinkSettingsSource

if TYPE_CHECKING:
    from sentinel.store import SqliteStore

# Fields of the latest-state and observation documents (sentinel/sinks/elasticsearch/documents.py).
SITE = "sentinel.site"
VANTAGE = "sentinel.vantage"
SYSTEM = "sentinel.system.id"
SYSTEM_NAME = "sentinel.system.name"
DEPARTMENT = "sentinel.system.department"
TIER = "sentinel.system.tier"
CATEGORY = "rule.category"
STATUS = "sentinel.finding.status"
FINDING_ID = "sentinel.finding.id"
FIRST_SEEN = "sentinel.finding.first_seen"
LAST_SEEN = "sentinel.finding.last_seen"
TARGET = "sentinel.finding.target"
#: not in the documents yet; read when a sink that ships it is deployed (see `stale_clause`)
STALE_SINCE = "sentinel.finding.stale_since"
SEVERITY = "event.severity"
RULE = "rule.id"
TIMESTAMP = "@timestamp"
OBS_KIND = "sentinel.observation.kind"
OBS_STATUS = "sentinel.observation.status"
DATASET = "event.dataset"

ACTIVE = [s.value for s in ACTIVE_STATUSES]
SEVERITY_OF = {number: severity for severity, number in SEVERITY_NUMBER.items()}
#: severities, worst first
WORST_FIRST = [s.value for s in reversed(Severity)]
#: the list's age filter (first seen within), as on the alerts page
AGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
#: index.max_result_window's default: `from` + `size` beyond it needs `search_after`
RESULT_WINDOW = 10_000
#: one page of a whole-estate read (compliance, reports, early warnings)
SCAN_PAGE = 1_000
#: terms sizes: sites in the estate, values in a filter list; systems per observation aggregation (buckets stay
#: well under search.max_buckets, 65,536: systems x kinds x statuses)
MAX_SITES = 1_000
MAX_CHOICES = 1_000
SYSTEMS_PER_AGG = 250
MAX_SYSTEMS = 60_000
#: what a list page reads of each document (no evidence: the list does not show it)
LIST_SOURCE = ["message", SEVERITY, "rule.id", "rule.category", "sentinel.site", "sentinel.vantage"]
LIST_SOURCE += ["sentinel.system", "sentinel.finding", "sentinel.controls"]


class EstateUnavailableError(SentinelError):
    """The shared cluster cannot be read: down, refusing, or not Elasticsearch. `since` is the first failure of
    the current outage (the reader remembers it until a read succeeds)."""

    def __init__(self, url: str, reason: str, since: datetime) -> None:
        self.url, self.reason, self.since = url, reason, since
        super().__init__(f"Elasticsearch at {url} cannot be read since {since:%Y-%m-%d %H:%M:%S} UTC: {reason}")


class EstateQueryError(SentinelError):
    """A request the reader will not send (a page past the result window, a damaged cursor)."""


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def _date(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _millis(value: Any) -> datetime | None:
    """A `max` aggregation on a date: epoch milliseconds (null when no document has the field)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    return None


# -- scope and filters ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EstateScope:
    """What one reader may see of the estate: some sites (a district's users) or all (None: the city), and some
    departments (an owner) or all."""

    sites: tuple[str, ...] | None = None
    departments: tuple[str, ...] | None = None

    def allows(self, site: str) -> bool:
        return self.sites is None or site in self.sites

    def clauses(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"exists": {"field": SITE}}]
        if self.sites is not None:
            out.append({"terms": {SITE: list(self.sites)}})
        if self.departments is not None:
            out.append({"terms": {DEPARTMENT: list(self.departments)}})
        return out


def active_clause() -> dict[str, Any]:
    return {"terms": {STATUS: ACTIVE}}


def overdue_clause(policy: FindingsSettings, now: datetime) -> dict[str, Any]:
    """Active and first seen before its severity's deadline (findings.sla_days), as `is_overdue` reads it."""
    late = []
    for sev in Severity:
        days = policy.days_for(sev)
        if days is not None:
            due = {"range": {FIRST_SEEN: {"lt": _iso(now - timedelta(days=days))}}}
            late.append({"bool": {"filter": [{"term": {SEVERITY: SEVERITY_NUMBER[sev]}}, due]}})
    if not late:
        return {"match_none": {}}
    return {"bool": {"filter": [active_clause()], "should": late, "minimum_should_match": 1}}


def stale_clause(cutoff: datetime) -> dict[str, Any]:
    """Active and not confirmed lately: the document's `stale_since` when a sink ships it, else last confirmed
    (`last_seen`, which every confirming sweep moves) before the cutoff, which is also what a silent site's
    findings become."""
    recent = [{"exists": {"field": STALE_SINCE}}, {"range": {LAST_SEEN: {"lt": _iso(cutoff)}}}]
    return {"bool": {"filter": [active_clause()], "should": recent, "minimum_should_match": 1}}


def _escape_wildcard(text: str) -> str:
    return "".join("\\" + ch if ch in "*?\\" else ch for ch in text)


def text_clause(text: str) -> dict[str, Any]:
    """Words of the title, or part of the target, system id or name, or rule id (case-insensitive)."""
    pattern = f"*{_escape_wildcard(text)}*"
    return {
        "bool": {
            "should": [
                {"match": {"message": {"query": text, "operator": "and"}}},
                *({"wildcard": {f: {"value": pattern, "case_insensitive": True}}} for f in (TARGET, SYSTEM, RULE)),
                {"wildcard": {SYSTEM_NAME: {"value": pattern, "case_insensitive": True}}},
            ],
            "minimum_should_match": 1,
        }
    }


@dataclass(frozen=True)
class EstateFilter:
    """The findings list's filters (parsed and bounded by the caller; see sentinel/web/estate.py)."""

    sites: tuple[str, ...] = ()
    min_severity: Severity | None = None
    status: str = "active"  # active | all | a FindingStatus value
    department: str | None = None
    rule: str | None = None
    vantage: Vantage | None = None
    system: str | None = None
    tier: str | None = None
    category: str | None = None
    #: first seen within 24h | 7d | 30d, or older30d (as the alerts page)
    age: str | None = None
    text: str | None = None
    overdue: bool = False
    stale: bool = False

    def clauses(self, policy: FindingsSettings, now: datetime, stale_cutoff: datetime, sites: bool = True) -> list[Any]:
        out: list[dict[str, Any]] = []
        if sites and self.sites:
            out.append({"terms": {SITE: list(self.sites)}})
        if self.status == "active":
            out.append(active_clause())
        elif self.status != "all":
            out.append({"term": {STATUS: FindingStatus(self.status).value}})
        if self.min_severity is not None:
            out.append({"range": {SEVERITY: {"gte": SEVERITY_NUMBER[self.min_severity]}}})
        for name, value in (
            (DEPARTMENT, self.department),
            (RULE, self.rule),
            (SYSTEM, self.system),
            (TIER, self.tier),
            (CATEGORY, self.category),
        ):
            if value:
                out.append({"term": {name: value}})
        if self.age in AGES:
            out.append({"range": {FIRST_SEEN: {"gte": _iso(now - AGES[self.age])}}})
        elif self.age == "older30d":
            out.append({"range": {FIRST_SEEN: {"lt": _iso(now - AGES["30d"])}}})
        if self.vantage is not None:
            out.append({"term": {VANTAGE: self.vantage.value}})
        if self.text:
            out.append(text_clause(self.text))
        if self.overdue:
            out.append(overdue_clause(policy, now))
        if self.stale:
            out.append(stale_clause(stale_cutoff))
        return out


# -- what the reader returns ---------------------------------------------------------------------------------


@dataclass
class SiteSummary:
    """One site's active findings by severity, the systems they touch, stale and overdue ones, and the newest
    thing it recorded (a finding's change or an observation): a district that went quiet shows as `silent`."""

    site: str
    active: dict[str, int] = field(default_factory=dict)
    systems_affected: int = 0
    stale: int = 0
    overdue: int = 0
    newest: datetime | None = None
    silent: bool = True
    vantages: tuple[str, ...] = ()

    @property
    def active_total(self) -> int:
        return sum(self.active.values())

    @property
    def worst(self) -> str:
        return next((s for s in WORST_FIRST if self.active.get(s)), "none")

    @property
    def shipped(self) -> bool:
        return self.newest is not None

    def rank(self) -> tuple[Any, ...]:
        """Worst first: silent sites (their figures cannot be trusted), then by critical, high, ... counts, then
        overdue; the name breaks ties."""
        return (not self.silent, *(-self.active.get(s, 0) for s in WORST_FIRST), -self.overdue, self.site)

    def as_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "active": {s: self.active.get(s, 0) for s in WORST_FIRST},
            "active_total": self.active_total,
            "worst": self.worst,
            "systems_affected": self.systems_affected,
            "stale": self.stale,
            "overdue": self.overdue,
            "newest": self.newest.isoformat() if self.newest else None,
            "silent": self.silent,
            "shipped": self.shipped,
            "vantages": list(self.vantages),
        }


@dataclass(frozen=True)
class EstateSummary:
    at: datetime
    sites: list[SiteSummary]
    #: the whole scope's figures (systems affected counted across sites: a system two sites see counts once)
    totals: SiteSummary


@dataclass(frozen=True)
class EstateFinding:
    """A finding as the estate shows it: the finding, and the registry facts its document carries."""

    finding: Finding
    system_name: str
    department: str
    tier: str

    def as_dict(self) -> dict[str, Any]:
        return self.finding.to_dict() | {
            "system_name": self.system_name,
            "department": self.department,
            "tier": self.tier,
        }


@dataclass(frozen=True)
class FindingsPage:
    items: list[EstateFinding]
    total: int
    start: int
    size: int
    #: matches per site under the same filters, the site filter aside (what the city's grouping shows)
    by_site: dict[str, int]
    departments: list[str]
    rules: list[str]
    #: the cursor of the next page (`search_after`), None on the last one
    after: str | None


def encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values), separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(text: str, length: int) -> list[Any]:
    """A cursor from `encode_cursor`; EstateQueryError if it was damaged (it comes from a URL)."""
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error):
        raise EstateQueryError("the 'after' cursor is damaged; start again from the first page") from None
    if not isinstance(values, list) or len(values) != length:
        raise EstateQueryError("the 'after' cursor does not belong to this list; start again from the first page")
    if not all(v is None or isinstance(v, str | int | float) for v in values):
        raise EstateQueryError("the 'after' cursor is damaged; start again from the first page")
    return values


# -- documents back into findings ----------------------------------------------------------------------------


def _severity(doc: Mapping[str, Any]) -> Severity:
    number = (doc.get("event") or {}).get("severity")
    if isinstance(number, int | float) and int(number) in SEVERITY_OF:
        return SEVERITY_OF[int(number)]
    named = str((doc.get("vulnerability") or {}).get("severity") or "").lower()
    return Severity(named) if named in WORST_FIRST else Severity.INFO


def finding_from_document(source: Mapping[str, Any]) -> Finding:
    """A latest-state document (documents.finding_document) as the Finding its site recorded. Evidence comes back
    as the document's scalar leaves; `stale_since` and `planned_fix` when the document has them."""
    ours = source.get("sentinel") or {}
    f = ours.get("finding") or {}
    rule = source.get("rule") or {}
    vantage = ours.get("vantage")
    first = _date(f.get("first_seen")) or datetime.fromtimestamp(0, UTC)
    return Finding(
        id=str(f.get("id") or (source.get("event") or {}).get("id") or ""),
        rule_id=str(rule.get("id") or ""),
        title=str(source.get("message") or rule.get("description") or ""),
        severity=_severity(source),
        category=str(rule.get("category") or ""),
        system_id=str((ours.get("system") or {}).get("id") or ""),
        target=str(f.get("target") or ""),
        status=FindingStatus(f.get("status") or "open"),
        first_seen=first,
        last_seen=_date(f.get("last_seen")) or first,
        occurrences=int(f.get("occurrences") or 0),
        evidence=dict(ours.get("evidence") or {}),
        controls=[str(c) for c in ours.get("controls") or []],
        remediation=str(f.get("remediation") or ""),
        status_reason=f.get("status_reason"),
        status_by=f.get("status_by"),
        suppressed_until=_date(f.get("suppressed_until")),
        resolved_at=_date(f.get("resolved_at")),
        regression=bool(f.get("regression")),
        stale_since=_date(f.get("stale_since")),
        planned_fix=_date(f.get("planned_fix")),
        site=str(ours.get("site") or ""),
        vantage=Vantage(vantage) if vantage in {v.value for v in Vantage} else None,
    )


def estate_finding(source: Mapping[str, Any]) -> EstateFinding:
    system = (source.get("sentinel") or {}).get("system") or {}
    finding = finding_from_document(source)
    return EstateFinding(
        finding,
        str(system.get("name") or finding.system_id),
        str(system.get("department") or ""),
        str(system.get("tier") or ""),
    )


# -- the reader ----------------------------------------------------------------------------------------------

#: the list's order: most severe first, newest first within a severity (as the alerts page), then a unique key
FINDINGS_SORT: list[dict[str, Any]] = [
    {SEVERITY: {"order": "desc"}},
    {FIRST_SEEN: {"order": "desc"}},
    {SITE: {"order": "asc"}},
    {VANTAGE: {"order": "asc"}},
    {FINDING_ID: {"order": "asc"}},
]
SCAN_SORT: list[dict[str, Any]] = [{SITE: "asc"}, {VANTAGE: "asc"}, {FINDING_ID: "asc"}]


class EstateReader:
    """Reads the whole estate from the shared cluster, with the sink's connection settings (URL, API key or basic
    auth, CA file). Thread-safe: the web view calls it from worker threads.

    `silent_after`: a site whose newest record is older is shown as silent; `stale_after`: an active finding not
    confirmed for this long counts as stale; `sites`: sites expected to report (a site that has shipped nothing
    yet still gets its row); `request_timeout`: per request (a page should not wait the sink's 30 s)."""

    def __init__(
        self,
        es: ElasticsearchSettings,
        client: Elasticsearch | None = None,
        *,
        policy: FindingsSettings | None = None,
        sites: Sequence[str] = (),
        silent_after: timedelta = timedelta(hours=1),
        stale_after: timedelta = timedelta(hours=24),
        observation_lookback: timedelta = timedelta(days=7),
        request_timeout: float | None = None,
    ) -> None:
        self.es = es
        self.names = IndexNames(es.index_prefix)
        self.policy = policy or FindingsSettings()
        self.expected_sites = tuple(dict.fromkeys(sites))
        self.silent_after, self.stale_after, self.lookback = silent_after, stale_after, observation_lookback
        self.url = mask_url(es.url)
        self._own = client is None
        if client is None:
            from sentinel.sinks.elasticsearch.client import build_client

            client = build_client(es)
        self._client = client.options(request_timeout=request_timeout or min(es.request_timeout, 10.0))
        self._base = client
        self._down_since: datetime | None = None

    @property
    def down_since(self) -> datetime | None:
        """The first failure of the current outage, None while reads succeed."""
        return self._down_since

    def close(self) -> None:
        if self._own:
            self._base.close()

    # -- transport ----------------------------------------------------------------------------------------
    def _fail(self, reason: str) -> EstateUnavailableError:
        if self._down_since is None:
            self._down_since = datetime.now(UTC)
        return EstateUnavailableError(self.url, reason, self._down_since)

    def _search(self, index: str, body: dict[str, Any]) -> dict[str, Any]:
        """One search; missing indices are an empty answer (a site that shipped nothing yet), a cluster that cannot
        answer is EstateUnavailableError."""
        try:
            resp = self._client.search(index=index, allow_no_indices=True, ignore_unavailable=True, **body)
        except NotFoundError as exc:
            if _error_type(exc) != "index_not_found_exception":
                raise self._fail(_api_reason(exc)) from None
            self._down_since = None
            return {}
        except UnsupportedProductError:
            raise self._fail("the server there is not Elasticsearch (no X-Elastic-Product header)") from None
        except ApiError as exc:
            raise self._fail(_api_reason(exc)) from None
        except TransportError as exc:
            raise self._fail(f"{type(exc).__name__}: {exc.message}") from None
        self._down_since = None
        return cast("dict[str, Any]", resp.body)

    def _hits(self, answer: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list((answer.get("hits") or {}).get("hits") or [])

    # -- summaries ----------------------------------------------------------------------------------------
    def summary(self, scope: EstateScope = EstateScope(), now: datetime | None = None) -> EstateSummary:
        """One row per site, worst first: two aggregation requests (latest state, newest observation)."""
        now = now or datetime.now(UTC)
        per_site = self._finding_summaries(scope, now, {SITE: {"terms": {"field": SITE, "size": MAX_SITES}}})
        whole = self._finding_summaries(scope, now, None)
        newest, vantages = self._newest_observations(scope, now)
        names = [s for s in self.expected_sites if scope.allows(s)] + list(scope.sites or ())
        rows = {name: SiteSummary(name) for name in dict.fromkeys(names)}
        for name, row in per_site.items():
            rows[name] = row
        for name, when in newest.items():
            row = rows.setdefault(name, SiteSummary(name))
            row.newest = max(filter(None, (row.newest, when)))
            row.vantages = tuple(sorted({*row.vantages, *vantages.get(name, ())}))
        for row in rows.values():
            row.silent = row.newest is None or row.newest < now - self.silent_after
        ordered = sorted(rows.values(), key=SiteSummary.rank)
        totals = whole.get("", SiteSummary("all"))
        totals.site = "all"
        totals.newest = max((r.newest for r in ordered if r.newest), default=None)
        totals.silent = any(r.silent for r in ordered)
        totals.vantages = tuple(sorted({v for r in ordered for v in r.vantages}))
        return EstateSummary(now, ordered, totals)

    def _summary_aggs(self, now: datetime) -> dict[str, Any]:
        return {
            "newest": {"max": {"field": TIMESTAMP}},
            "vantages": {"terms": {"field": VANTAGE, "size": 10}},
            "active": {
                "filter": active_clause(),
                "aggs": {
                    "severity": {"terms": {"field": SEVERITY, "size": 10}},
                    "systems": {"cardinality": {"field": SYSTEM, "precision_threshold": 40_000}},
                    "stale": {"filter": stale_clause(now - self.stale_after)},
                    "overdue": {"filter": overdue_clause(self.policy, now)},
                },
            },
        }

    def _finding_summaries(
        self, scope: EstateScope, now: datetime, by: dict[str, Any] | None
    ) -> dict[str, SiteSummary]:
        """Per site (`by` a terms aggregation on the site), or for the whole scope (key "")."""
        aggs = self._summary_aggs(now)
        if by is not None:
            ((name, spec),) = by.items()
            aggs = {name: {**spec, "aggs": aggs}}
        answer = self._search(
            self.names.latest_pattern,
            {"size": 0, "track_total_hits": False, "query": {"bool": {"filter": scope.clauses()}}, "aggs": aggs},
        )
        found = answer.get("aggregations") or {}  # none at all when no index matched
        buckets = (found.get(SITE) or {}).get("buckets", []) if by is not None else ([found] if found else [])
        out: dict[str, SiteSummary] = {}
        for bucket in buckets:
            key = str(bucket.get("key", "")) if by is not None else ""
            active = bucket.get("active") or {}
            severities = {
                SEVERITY_OF[int(b["key"])].value: int(b["doc_count"])
                for b in (active.get("severity") or {}).get("buckets", [])
                if int(b["key"]) in SEVERITY_OF
            }
            out[key] = SiteSummary(
                key,
                active=severities,
                systems_affected=int((active.get("systems") or {}).get("value") or 0),
                stale=int((active.get("stale") or {}).get("doc_count") or 0),
                overdue=int((active.get("overdue") or {}).get("doc_count") or 0),
                newest=_millis((bucket.get("newest") or {}).get("value")),
                vantages=tuple(sorted(str(b["key"]) for b in (bucket.get("vantages") or {}).get("buckets", []))),
            )
        return out

    def _newest_observations(
        self, scope: EstateScope, now: datetime
    ) -> tuple[dict[str, datetime], dict[str, list[str]]]:
        """The newest observation per site within the lookback (the data streams hold months: stay in range)."""
        window = {"range": {TIMESTAMP: {"gte": _iso(now - self.lookback)}}}
        answer = self._search(
            self.names.observations_pattern,
            {
                "size": 0,
                "track_total_hits": False,
                "query": {"bool": {"filter": [*scope.clauses(), window]}},
                "aggs": {
                    SITE: {
                        "terms": {"field": SITE, "size": MAX_SITES},
                        "aggs": {
                            "newest": {"max": {"field": TIMESTAMP}},
                            "vantages": {"terms": {"field": VANTAGE, "size": 10}},
                        },
                    }
                },
            },
        )
        newest: dict[str, datetime] = {}
        vantages: dict[str, list[str]] = {}
        for bucket in ((answer.get("aggregations") or {}).get(SITE) or {}).get("buckets", []):
            when = _millis((bucket.get("newest") or {}).get("value"))
            if when is not None:
                newest[str(bucket["key"])] = when
                vantages[str(bucket["key"])] = [str(b["key"]) for b in bucket["vantages"]["buckets"]]
        return newest, vantages

    # -- lists --------------------------------------------------------------------------------------------
    def findings(
        self,
        scope: EstateScope,
        filters: EstateFilter = EstateFilter(),
        *,
        page: int = 1,
        per_page: int = 50,
        after: str | None = None,
        evidence: bool = False,
        now: datetime | None = None,
    ) -> FindingsPage:
        """One page of findings, most severe first then newest, with the total, the count per site under the same
        filters (the site filter aside) and the departments and rules in scope (the filter lists).

        `page` uses from/size up to the 10,000-hit window; `after` (a page's cursor) uses search_after, at any
        depth."""
        now = now or datetime.now(UTC)
        start = 0 if after else (max(page, 1) - 1) * per_page
        if start + per_page > RESULT_WINDOW:
            raise EstateQueryError(
                f"page {page} lies past the first {RESULT_WINDOW:,} findings: narrow the filters, or follow the "
                "pages' 'after' cursor"
            )
        stale_cut = now - self.stale_after
        chosen = filters.clauses(self.policy, now, stale_cut)
        body: dict[str, Any] = {
            "query": {"bool": {"filter": scope.clauses()}},
            "post_filter": {"bool": {"filter": chosen}},
            "sort": FINDINGS_SORT,
            "size": per_page,
            "track_total_hits": True,
            "aggs": {
                "departments": {"terms": {"field": DEPARTMENT, "size": MAX_CHOICES, "order": {"_key": "asc"}}},
                "rules": {"terms": {"field": RULE, "size": MAX_CHOICES, "order": {"_key": "asc"}}},
                "by_site": {
                    "filter": {"bool": {"filter": filters.clauses(self.policy, now, stale_cut, sites=False)}},
                    "aggs": {SITE: {"terms": {"field": SITE, "size": MAX_SITES}}},
                },
            },
        }
        if after:
            body["search_after"] = decode_cursor(after, len(FINDINGS_SORT))
        else:
            body["from"] = start
        if not evidence:
            body["_source"] = LIST_SOURCE
        answer = self._search(self.names.latest_pattern, body)
        hits = self._hits(answer)
        total = int(((answer.get("hits") or {}).get("total") or {}).get("value") or 0)
        aggs = answer.get("aggregations") or {}

        def keys(name: str) -> list[str]:
            return [str(b["key"]) for b in (aggs.get(name) or {}).get("buckets", [])]

        by_site = {
            str(b["key"]): int(b["doc_count"]) for b in ((aggs.get("by_site") or {}).get(SITE) or {}).get("buckets", [])
        }
        more = bool(hits) and len(hits) == per_page and (after is not None or start + len(hits) < total)
        return FindingsPage(
            [estate_finding(h.get("_source") or {}) for h in hits],
            total,
            start,
            per_page,
            by_site,
            keys("departments"),
            keys("rules"),
            encode_cursor(hits[-1]["sort"]) if more else None,
        )

    def iter_findings(
        self,
        scope: EstateScope = EstateScope(),
        statuses: Sequence[FindingStatus] | None = None,
        system_ids: Sequence[str] | None = None,
        rule_ids: Sequence[str] | None = None,
        min_severity: Severity | None = None,
    ) -> Iterator[Finding]:
        """Every matching finding, a page of SCAN_PAGE at a time (search_after on a unique sort): for compliance
        and reports, which need the estate's findings and not a page of them. A finding changed between two pages
        may be read in its newer state or, when a sort key moved, not at all: a report is a reading at one time."""
        clauses: list[dict[str, Any]] = scope.clauses()
        if statuses is not None:
            clauses.append({"terms": {STATUS: [s.value for s in statuses]}})
        if system_ids is not None:
            clauses.append({"terms": {SYSTEM: list(system_ids)}})
        if rule_ids is not None:
            clauses.append({"terms": {RULE: list(rule_ids)}})
        if min_severity is not None:
            clauses.append({"range": {SEVERITY: {"gte": SEVERITY_NUMBER[min_severity]}}})
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {
                "query": {"bool": {"filter": clauses}},
                "sort": SCAN_SORT,
                "size": SCAN_PAGE,
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            hits = self._hits(self._search(self.names.latest_pattern, body))
            for hit in hits:
                yield finding_from_document(hit.get("_source") or {})
            if len(hits) < SCAN_PAGE:
                return
            after = hits[-1]["sort"]

    def rule_findings(self, rule_id: str, scope: EstateScope = EstateScope()) -> list[Finding]:
        """Every site's findings of one rule, whatever their status: what an early warning's progress table counts
        (`sentinel.advisories.progress.by_site`)."""
        return list(self.iter_findings(scope, rule_ids=[rule_id]))

    def sites(self, scope: EstateScope = EstateScope()) -> list[str]:
        """Sites with anything in the cluster (latest state or observations in the lookback)."""
        answer = self._search(
            f"{self.names.latest_pattern},{self.names.observations_pattern}",
            {
                "size": 0,
                "track_total_hits": False,
                "query": {"bool": {"filter": [*scope.clauses(), self._recent_or_state()]}},
                "aggs": {SITE: {"terms": {"field": SITE, "size": MAX_SITES, "order": {"_key": "asc"}}}},
            },
        )
        return [str(b["key"]) for b in ((answer.get("aggregations") or {}).get(SITE) or {}).get("buckets", [])]

    def systems(self, scope: EstateScope = EstateScope()) -> set[str]:
        """Systems any site in scope recorded something about (a finding, or an observation in the lookback)."""
        answer = self._search(
            f"{self.names.latest_pattern},{self.names.observations_pattern}",
            {
                "size": 0,
                "track_total_hits": False,
                "query": {"bool": {"filter": [*scope.clauses(), self._recent_or_state()]}},
                "aggs": {SYSTEM: {"terms": {"field": SYSTEM, "size": MAX_SYSTEMS}}},
            },
        )
        return {str(b["key"]) for b in ((answer.get("aggregations") or {}).get(SYSTEM) or {}).get("buckets", [])}

    def _recent_or_state(self) -> dict[str, Any]:
        since = _iso(datetime.now(UTC) - self.lookback)
        return {
            "bool": {
                "should": [{"term": {DATASET: "sentinel.finding"}}, {"range": {TIMESTAMP: {"gte": since}}}],
                "minimum_should_match": 1,
            }
        }

    def observed_kinds(self, scope: EstateScope, system_ids: Sequence[str], since: datetime) -> list[dict[str, Any]]:
        """Per system and observation kind since `since`: the newest ok and the newest error observation, from
        every site and vantage in scope, as rows shaped like the store's `latest_observations` (target and data
        left empty: compliance reads whether a kind was observed, and when)."""
        rows: list[dict[str, Any]] = []
        ids = list(dict.fromkeys(system_ids))
        for at in range(0, len(ids), SYSTEMS_PER_AGG):
            chunk = ids[at : at + SYSTEMS_PER_AGG]
            window = {"range": {TIMESTAMP: {"gte": _iso(since)}}}
            answer = self._search(
                self.names.observations_pattern,
                {
                    "size": 0,
                    "track_total_hits": False,
                    "query": {"bool": {"filter": [*scope.clauses(), {"terms": {SYSTEM: chunk}}, window]}},
                    "aggs": {
                        SYSTEM: {
                            "terms": {"field": SYSTEM, "size": len(chunk)},
                            "aggs": {
                                "kinds": {
                                    "terms": {"field": OBS_KIND, "size": 200},
                                    "aggs": {
                                        "status": {
                                            "terms": {"field": OBS_STATUS, "size": 5},
                                            "aggs": {"newest": {"max": {"field": TIMESTAMP}}},
                                        }
                                    },
                                }
                            },
                        }
                    },
                },
            )
            for system in ((answer.get("aggregations") or {}).get(SYSTEM) or {}).get("buckets", []):
                for kind in system["kinds"]["buckets"]:
                    newest = {str(b["key"]): _millis(b["newest"]["value"]) for b in kind["status"]["buckets"]}
                    ok, error = newest.get("ok"), newest.get("error")
                    for status, when in (("ok", ok), ("error", error)):
                        # an error older than the newest ok says nothing the ok does not
                        if when is None or (status == "error" and ok is not None and ok >= when):
                            continue
                        rows.append(
                            {
                                "kind": str(kind["key"]),
                                "system_id": str(system["key"]),
                                "target": "",
                                "observed_at": when.isoformat(),
                                "probe": "",
                                "status": status,
                                "error": None,
                                "data": {},
                            }
                        )
        return rows


def _error_type(exc: ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    return str(error.get("type", "")) if isinstance(error, dict) else ""


def _api_reason(exc: ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    detail = f"{error.get('type', '')}: {error.get('reason', '')}" if isinstance(error, dict) else str(exc.message)
    hint = ""
    if exc.status_code in (401, 403):
        hint = " (check sinks.elasticsearch api_key or username/password, and the read privilege on the patterns)"
    return f"refused with HTTP {exc.status_code} {detail}{hint}"[:500]


class EstateFindingSource:
    """What compliance assessment (`sentinel.compliance.assess.iter_assess`) and report building
    (`sentinel.reports.build.build_report`) read of a store, `list_findings` and `latest_observations`, answered
    by the cluster for the systems given: the estate's findings, and per system and kind whether (and when) it was
    observed within `since` (see `EstateReader.observed_kinds`)."""

    def __init__(self, reader: EstateReader, scope: EstateScope, system_ids: Sequence[str], since: datetime) -> None:
        self.reader, self.scope, self.system_ids, self.since = reader, scope, list(system_ids), since

    def list_findings(
        self,
        statuses: Sequence[FindingStatus] | None = None,
        min_severity: Severity | None = None,
        system_ids: Sequence[str] | None = None,
        rule_ids: Sequence[str] | None = None,
    ) -> list[Finding]:
        ids = list(system_ids) if system_ids is not None else self.system_ids
        return list(self.reader.iter_findings(self.scope, statuses, ids, rule_ids, min_severity))

    def latest_observations(self, system_id: str | None = None) -> list[dict[str, Any]]:
        ids = [system_id] if system_id is not None else self.system_ids
        return self.reader.observed_kinds(self.scope, ids, self.since)

    def as_store(self) -> SqliteStore:
        """This source where a store is asked for: assessment and report building read only the two methods
        above (a read protocol in those modules would make the cast unnecessary)."""
        return cast("SqliteStore", self)


@dataclass
class EstateSelection:
    """What `--estate` commands read: the reader, the source assessment and reports take instead of the store, the
    selected systems (narrowed to what the chosen sites recorded, with `--site`), and the systems the cluster knows
    that the registry does not (the city's registry is expected to hold every district's systems)."""

    reader: EstateReader
    source: EstateFindingSource
    system_ids: list[str]
    unregistered: list[str]
    sites: list[str]

    def close(self) -> None:
        self.reader.close()


def open_estate(
    settings: SinkSettingsSource,
    registered: Collection[str],
    selected: Sequence[str],
    sites: Sequence[str],
    since: datetime,
    policy: FindingsSettings | None = None,
) -> EstateSelection:
    """The estate for a command (`compliance status --estate`, `report compliance --estate`): every site, or the
    `sites` given (each must have shipped something). InputError for a bad or unknown site, EstateUnavailableError
    when the cluster cannot be read."""
    from sentinel.sinks.elasticsearch.settings import require_elasticsearch_settings

    bad = [s for s in sites if not SITE_SLUG.match(s)]
    if bad:
        raise InputError([Problem("--site", None, f"'{s}' is not a site ({SITE_RULE})") for s in bad])
    reader = EstateReader(require_elasticsearch_settings(settings), policy=policy, request_timeout=60.0)
    try:
        present = reader.sites()
        missing = [s for s in sites if s not in present]
        if missing:
            shown = ", ".join(present) or "none yet"
            raise InputError(
                [
                    Problem("--site", None, f"no site '{s}' in the cluster (sites that shipped: {shown})")
                    for s in missing
                ]
            )
        scope = EstateScope(tuple(dict.fromkeys(sites)) or None)
        seen = reader.systems(scope)
        ids = [i for i in selected if i in seen] if sites else list(selected)
        unregistered = sorted(seen - set(registered))
    except BaseException:
        reader.close()
        raise
    return EstateSelection(
        reader, EstateFindingSource(reader, scope, ids, since), ids, unregistered, list(scope.sites or present)
    )
