"""The city's estate pages over the shared Elasticsearch cluster (`web.estate: elasticsearch`): `/estate` (全市态势,
one row per site, worst first), `/estate/findings` (a page of every site's findings, the alerts page's filters plus
site and vantage) and their JSON twins `/api/estate` and `/api/estate/findings`.

Who sees what: a user with `sites:` (a district's people) sees only those sites on every estate page and API answer,
and asking for another site is 403; a user without it (the city's operators and auditors) sees every site, grouped
by site. An owner sees their own department only, as on the other pages. The reads are aggregations and pages
computed by Elasticsearch (sentinel.sinks.elasticsearch.estate), in worker threads; a cluster that is down or
refusing gives a page (503) that says so and since when.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from sentinel.errors import InputError
from sentinel.findings.policy import due_at, is_overdue
from sentinel.models import Severity, Vantage
from sentinel.models.observer import SITE
from sentinel.sinks.elasticsearch.estate import (
    EstateFilter,
    EstateFinding,
    EstateQueryError,
    EstateReader,
    EstateScope,
    EstateUnavailableError,
    FindingsPage,
)
from sentinel.web.auth import Permission, User
from sentinel.web.server import CTX_KEY, USER_KEY, _ago, _dumps, _forbid, _render

if TYPE_CHECKING:
    from sentinel.config.settings import Settings

ESTATE_KEY = web.AppKey("estate", EstateReader)
STATUSES = ("active", "open", "acknowledged", "rectified", "suppressed", "resolved", "all")
SEVERITIES = [s.value for s in reversed(Severity)]


def estate_reader(settings: Settings) -> EstateReader | None:
    """The reader `web.estate: elasticsearch` asks for, on the `sinks.elasticsearch` connection; None for the
    default (`store`: a single site, no estate pages). InputError when the cluster is not configured."""
    from sentinel.sinks.elasticsearch.settings import elasticsearch_settings

    if settings.web.estate != "elasticsearch":
        return None
    es = elasticsearch_settings(settings)
    if es is None:
        message = (
            "web.estate: elasticsearch reads the shared cluster with the sinks.elasticsearch connection; configure "
            "'sinks: {elasticsearch: {url: ...}}' (or SENTINEL_SINKS__ELASTICSEARCH__URL), or set web.estate: store"
        )
        raise InputError([settings.locate(("web", "estate"), message)])
    return EstateReader(
        es,
        policy=settings.findings,
        sites=settings.web.estate_sites,
        silent_after=timedelta(minutes=settings.web.estate_silent_minutes),
        stale_after=timedelta(hours=settings.web.estate_stale_hours),
    )


# -- request parsing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EstateRequest:
    """The list's query string, bounded: bad values are ignored (as on the alerts page), never a traceback."""

    site: str | None
    filters: EstateFilter
    severity: str
    status: str
    vantage: str
    page: int
    per_page: int
    after: str | None

    @classmethod
    def parse(cls, q: Any, default_per_page: int = 50, max_per_page: int = 200) -> EstateRequest:
        def num(name: str, default: int, hi: int) -> int:
            try:
                return min(max(int(q.get(name) or default), 1), hi)
            except ValueError:
                return default

        site = q.get("site") or None
        severity = q.get("severity") if q.get("severity") in SEVERITIES else ""
        status = q.get("status") if q.get("status") in STATUSES else "active"
        vantage = q.get("vantage") if q.get("vantage") in {v.value for v in Vantage} else ""
        filters = EstateFilter(
            sites=(site,) if site else (),
            min_severity=Severity(severity) if severity else None,
            status=status,
            department=q.get("department") or None,
            rule=q.get("rule") or None,
            vantage=Vantage(vantage) if vantage else None,
            system=q.get("system") or None,
            tier=q.get("tier") if q.get("tier") in ("city", "district", "street") else None,
            category=q.get("category") or None,
            age=q.get("age") if q.get("age") in ("24h", "7d", "30d", "older30d") else None,
            text=(q.get("q") or "").strip()[:100] or None,
            overdue=q.get("overdue") in ("1", "true", "on"),
            stale=q.get("stale") in ("1", "true", "on"),
        )
        after = (q.get("after") or "").strip()[:2000] or None
        return cls(
            site,
            filters,
            severity,
            status,
            vantage,
            num("page", 1, 100_000),
            num("per_page", default_per_page, max_per_page),
            after,
        )


def scope_for(user: User, site: str | None = None) -> EstateScope | None:
    """What `user` may read of the estate (None: not `site`). Sites: the user's `sites:`, or all; departments: all
    for those who see everything, the owner's own otherwise."""
    if site is not None and not user.sees_site(site):
        return None
    departments = None if user.can(Permission.VIEW_ALL) else (user.department or "",)
    return EstateScope(tuple(user.sites) or None, departments)


def _bad_site(site: str | None) -> str | None:
    if site is not None and not SITE.match(site):
        return f"'{site[:40]}' is not a site (a short slug such as city or hexi-district)"
    return None


def _pager(request: web.Request, ask: EstateRequest, found: FindingsPage) -> dict[str, Any]:
    params = {k: v for k, v in request.query.items() if k not in ("page", "after", "flash")}

    def link(**extra: str) -> str:
        return request.path + "?" + urlencode({**params, **extra})

    pages = max((found.total + ask.per_page - 1) // ask.per_page, 1)
    shown = len(found.items)
    if ask.after:  # past the numbered pages: forward only, by cursor
        return {
            "page": None,
            "pages": pages,
            "first": None,
            "last": None,
            "prev": None,
            "first_link": link(),
            "next": link(after=found.after) if found.after else None,
        }
    nxt = None
    if ask.page < pages:
        within = ask.page * ask.per_page + ask.per_page <= 10_000
        nxt = link(page=str(ask.page + 1)) if within else (link(after=found.after) if found.after else None)
    return {
        "page": ask.page,
        "pages": pages,
        "first": found.start + 1 if shown else 0,
        "last": found.start + shown,
        "prev": link(page=str(ask.page - 1)) if ask.page > 1 else None,
        "first_link": link(),
        "next": nxt,
    }


# -- pages ---------------------------------------------------------------------------------------------------


def _down_page(request: web.Request, template: str, exc: EstateUnavailableError, **context: Any) -> web.Response:
    """The cluster cannot be read: the page says so, where and since when (503), never a traceback."""
    return _render(request, template, status=503, **{**context, "down": exc})


async def estate_page(request: web.Request) -> web.Response:
    reader, user = request.app[ESTATE_KEY], request[USER_KEY]
    scope = scope_for(user)
    assert scope is not None  # no site asked for
    context: dict[str, Any] = {"page": "estate", "summary": None, "down": None}
    try:
        summary = await asyncio.to_thread(reader.summary, scope)
    except EstateUnavailableError as exc:
        return _down_page(request, "estate.html", exc, **context)
    now = summary.at
    return _render(request, "estate.html", **{**context, "summary": summary}, ago=lambda then: _ago(then, now))


async def estate_findings_page(request: web.Request) -> web.Response:
    reader, user = request.app[ESTATE_KEY], request[USER_KEY]
    ask = EstateRequest.parse(request.query)
    known = sorted({*(user.sites or reader.expected_sites), *([ask.site] if ask.site else [])})
    context: dict[str, Any] = {"page": "estate_findings", "q": ask, "found": None, "down": None, "sites": known}
    bad = _bad_site(ask.site)
    if bad:
        return _render(request, "estate_findings.html", status=400, error=bad, **context)
    scope = scope_for(user, ask.site)
    if scope is None:
        return _forbid(request, f"site '{ask.site}' (you see {', '.join(user.sites)})")
    try:
        found = await asyncio.to_thread(
            reader.findings, scope, ask.filters, page=ask.page, per_page=ask.per_page, after=ask.after
        )
    except EstateUnavailableError as exc:
        return _down_page(request, "estate_findings.html", exc, **context)
    except EstateQueryError as exc:
        return _render(request, "estate_findings.html", status=400, error=str(exc), **context)
    now = datetime.now(UTC)
    findings = [item.finding for item in found.items]
    return _render(
        request,
        "estate_findings.html",
        **{**context, "found": found, "sites": sorted({*known, *found.by_site})},
        pager=_pager(request, ask, found),
        site_link=lambda site: (
            "/estate/findings?"
            + urlencode(
                {**{k: v for k, v in request.query.items() if k not in ("page", "after", "site")}, "site": site}
            )
        ),
        due={f.id + f.site: due_at(f, reader.policy) for f in findings},
        overdue={f.id + f.site for f in findings if is_overdue(f, reader.policy, now)},
        now=now,
    )


# -- API -----------------------------------------------------------------------------------------------------


def _unavailable(exc: EstateUnavailableError) -> web.Response:
    return web.json_response(
        {"error": str(exc), "cluster": exc.url, "unreachable_since": exc.since.isoformat()}, status=503
    )


async def api_estate(request: web.Request) -> web.Response:
    """Every site in the user's scope, worst first: active findings by severity, systems affected, stale, overdue,
    newest record, silent."""
    reader, user = request.app[ESTATE_KEY], request[USER_KEY]
    scope = scope_for(user)
    assert scope is not None
    try:
        summary = await asyncio.to_thread(reader.summary, scope)
    except EstateUnavailableError as exc:
        return _unavailable(exc)
    return web.json_response(
        {
            "at": summary.at.isoformat(),
            "source": "elasticsearch",
            "sites": [r.as_dict() for r in summary.sites],
            "totals": summary.totals.as_dict(),
        },
        dumps=_dumps,
    )


async def api_estate_findings(request: web.Request) -> web.Response:
    """A page of findings (`limit`, default 100, at most 1,000; `page`, or the previous page's `after` cursor at
    any depth): {total, from, size, after, by_site, findings}; X-Total-Count as on /api/findings. Filters: site,
    severity (at least), status, vantage, tier, department, rule, category, system, age, q, overdue, stale."""
    reader, user = request.app[ESTATE_KEY], request[USER_KEY]
    ask = EstateRequest.parse(
        {**request.query, "per_page": request.query.get("limit", "")}, default_per_page=100, max_per_page=1000
    )
    bad = _bad_site(ask.site)
    if bad:
        return web.json_response({"error": bad}, status=400)
    scope = scope_for(user, ask.site)
    if scope is None:
        return _forbid(request, f"site '{ask.site}'")
    try:
        found = await asyncio.to_thread(
            reader.findings, scope, ask.filters, page=ask.page, per_page=ask.per_page, after=ask.after, evidence=True
        )
    except EstateUnavailableError as exc:
        return _unavailable(exc)
    except EstateQueryError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    now = datetime.now(UTC)

    def shown(item: EstateFinding) -> dict[str, Any]:
        due = due_at(item.finding, reader.policy)
        return item.as_dict() | {
            "due_at": due.isoformat() if due else None,
            "overdue": is_overdue(item.finding, reader.policy, now),
        }

    return web.json_response(
        {
            "total": found.total,
            "from": found.start,
            "size": found.size,
            "after": found.after,
            "by_site": found.by_site,
            "findings": [shown(item) for item in found.items],
        },
        dumps=_dumps,
        headers={"X-Total-Count": str(found.total)},
    )


def add_estate_routes(app: web.Application, reader: EstateReader) -> None:
    """Mount the estate pages (called by `add_web_routes` when the context has a reader)."""
    app[ESTATE_KEY] = reader
    assert CTX_KEY in app  # the web view's context: templates, users

    async def close(_: web.Application) -> None:
        reader.close()  # closes only a client the reader built itself

    app.on_cleanup.append(close)
    app.router.add_get("/estate", estate_page)
    app.router.add_get("/estate/findings", estate_findings_page)
    app.router.add_get("/api/estate", api_estate)
    app.router.add_get("/api/estate/findings", api_estate_findings)
