"""The situational-awareness view (`/`, `/alerts`, `/systems/ID`) and its JSON API (`/api/...`).

Pages use a signed session cookie set by `/login`; the API takes `Authorization: Bearer TOKEN`
(or the session cookie). No credentials: 401. A role without the right, or an owner asking for
another department's system: 403. Every action is recorded with who and why by the tracker.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from aiohttp import web

from sentinel.engine.rule import Rule
from sentinel.errors import SentinelError
from sentinel.findings.lifecycle import OWNER_EVENTS, InvalidTransitionError, LifecycleEvent
from sentinel.findings.policy import FindingsSettings, due_at, is_overdue
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Finding, Severity
from sentinel.models.finding import ACTIVE_STATUSES
from sentinel.registry.models import Registry
from sentinel.store import SqliteStore
from sentinel.store.sqlite import FindingQuery
from sentinel.web import charts, queries
from sentinel.web.auth import Authenticator, Permission, User
from sentinel.web.evidence import render_data, render_evidence
from sentinel.web.i18n import LANGUAGES, translator

if TYPE_CHECKING:
    from sentinel.sinks.elasticsearch.estate import EstateReader

USER_KEY = web.RequestKey("user", User)
COOKIE = "sentinel_session"
SEVERITIES = [s.value for s in reversed(Severity)]
ACTIONS = {
    "acknowledge": LifecycleEvent.ACKNOWLEDGE,
    "suppress": LifecycleEvent.SUPPRESS,
    "resolve": LifecycleEvent.RESOLVE,
    "accept-baseline": LifecycleEvent.ACCEPT_BASELINE,  # change/baseline rules: the current value becomes the norm
    "rectify": LifecycleEvent.RECTIFY,  # the owner's fix, verified by a sweep or a re-check
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: run the re-check of one finding for an actor (the listener wires it to the app and the shared network)
Recheck = Callable[[str, str], Awaitable[Finding]]
#: one re-check per finding per this many seconds: an owner clicking twice does not probe twice
RECHECK_COOLDOWN = 60.0
#: the live stream checks the store this often, and ends after STREAM_SECONDS (the browser reconnects)
STREAM_POLL = 2.0
STREAM_SECONDS = 300.0


class WebContext:
    """What the handlers need; the registry can be swapped on reload."""

    def __init__(
        self,
        store: SqliteStore,
        registry: Registry | Callable[[], Registry],
        auth: Authenticator,
        language: str = "zh",
        ready: Callable[[], bool] = lambda: True,
        policy: FindingsSettings | None = None,
        recheck: Recheck | None = None,
        rules: Mapping[str, Rule] | None = None,
        estate: EstateReader | None = None,
    ) -> None:
        self.store = store
        #: the whole estate from the shared cluster (web.estate: elasticsearch): the /estate pages; None: none
        self.estate = estate
        self.rules = rules  # rule id → Rule, for finding text in Chinese (None: the shipped rules)
        self._registry = registry
        self.auth = auth
        self.language = language
        self.tracker = FindingTracker(store)
        self.is_ready = ready
        self.policy = policy or FindingsSettings()
        self.recheck = recheck
        self._rechecked: dict[str, float] = {}
        #: the store's connection is shared by handlers running in worker threads: one at a time
        self.lock = threading.Lock()
        self.closing = asyncio.Event()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["evidence"] = render_evidence
        self.templates.filters["obsdata"] = render_data

    def version(self) -> tuple[int, int]:
        """Changes by other connections (sweeps) and by this one (actions): what the live view waits for."""
        return self.store.data_version()

    def may_recheck(self, finding_id: str, note: str) -> bool:
        """The same rectification is re-checked at most once per cooldown (a new note may be checked at once;
        the scoped network's per-target rate limit still applies to every re-check)."""
        now = time.monotonic()
        key = f"{finding_id}\x1f{note}"
        if now - self._rechecked.get(key, -RECHECK_COOLDOWN) < RECHECK_COOLDOWN:
            return False
        self._rechecked = {k: t for k, t in self._rechecked.items() if now - t < RECHECK_COOLDOWN}
        self._rechecked[key] = now
        return True

    @property
    def registry(self) -> Registry:
        """The current registry (a callable source follows reloads of the running monitor)."""
        return self._registry if isinstance(self._registry, Registry) else self._registry()


CTX_KEY = web.AppKey("ctx", WebContext)


def _lang(request: web.Request) -> str:
    lang = request.query.get("lang") or request.cookies.get("lang") or request.app[CTX_KEY].language
    return lang if lang in LANGUAGES else "zh"


def _render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    ctx = request.app[CTX_KEY]
    lang = _lang(request)
    user = request.get(USER_KEY)
    context.setdefault("page", "")
    html = ctx.templates.get_template(name).render(
        t=translator(lang, ctx.rules),
        lang=lang,
        user=user,
        can_act=bool(user and user.can(Permission.ACT)),
        can_remediate=bool(user and user.can(Permission.REMEDIATE)),
        severities=SEVERITIES,
        flash=request.query.get("flash"),
        has_estate=ctx.estate is not None,
        error=context.pop("error", None),
        **context,
    )
    resp = web.Response(text=html, content_type="text/html", status=status)
    if "lang" in request.query:
        resp.set_cookie("lang", lang, httponly=True, samesite="Lax")
    return resp


def _user_from(request: web.Request) -> User | None:
    auth = request.app[CTX_KEY].auth
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return auth.by_token(header[7:].strip())
    cookie = request.cookies.get(COOKIE)
    return auth.by_session(cookie) if cookie else None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in ("/login", "/healthz", "/readyz", "/metrics", "/probe", "/-/healthy"):
        return await handler(request)
    user = _user_from(request)
    if user is None:
        if request.path.startswith("/api/"):
            return web.json_response(
                {"error": "authentication required"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="sentinel"'},
            )
        raise web.HTTPFound(f"/login?next={quote(request.path_qs)}")
    request[USER_KEY] = user
    return await handler(request)


def _forbid(request: web.Request, what: str) -> web.Response:
    if request.path.startswith("/api/"):
        return web.json_response({"error": f"forbidden: {what}"}, status=403)
    return _render(request, "base.html", status=403, error=translator(_lang(request))["forbidden"] + f": {what}")


# -- pages ---------------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    return _render(request, "login.html")


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    user = request.app[CTX_KEY].auth.by_token(str(form.get("token", "")))
    if user is None:
        return _render(request, "login.html", status=401, error=translator(_lang(request))["bad_token"])
    resp = web.HTTPFound("/")
    resp.set_cookie(COOKIE, request.app[CTX_KEY].auth.session_cookie(user), httponly=True, samesite="Strict")
    raise resp


async def logout(_: web.Request) -> web.StreamResponse:
    resp = web.HTTPFound("/login")
    resp.del_cookie(COOKIE)
    raise resp


def _ago(then: datetime | str | None, now: datetime) -> str:
    if then is None:
        return "—"
    when = datetime.fromisoformat(then) if isinstance(then, str) else then
    secs = max((now - when).total_seconds(), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            return f"{secs / size:.0f} {unit}"
    return f"{secs:.0f} s"


async def overview(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    data = await asyncio.to_thread(_overview_locked, ctx, user)
    t = translator(_lang(request))
    trend_chart = charts.stacked_area(data["trend"], SEVERITIES, t, t["trend_active"])
    avail = charts.availability_bars(
        [
            (t[r.name], data["availability"][r.name].get("24h"), data["availability"][r.name].get("7d"))
            for r in data["tiers"]
        ],
        t["availability"],
    )
    return _render(
        request,
        "overview.html",
        page="overview",
        trend_chart=trend_chart,
        availability_chart=avail,
        ago=lambda then: _ago(then, data["now"]),
        **data,
    )


def _overview_locked(ctx: WebContext, user: User) -> dict[str, Any]:
    # One connection is shared by the handlers: reads in a worker thread take turns (the event loop stays free).
    with ctx.lock:
        return queries.overview(ctx.store, ctx.registry, user, ctx.policy)


def _page_links(request: web.Request, filters: queries.Filters, total: int) -> dict[str, Any]:
    pages = max((total + filters.per_page - 1) // filters.per_page, 1)
    params = {k: v for k, v in request.query.items() if k not in ("page", "flash")}

    def link(n: int) -> str:
        return request.path + "?" + urlencode({**params, "page": str(n)})

    return {
        "page": filters.page,
        "pages": pages,
        "first": (filters.page - 1) * filters.per_page + 1 if total else 0,
        "last": min(filters.page * filters.per_page, total),
        "prev": link(filters.page - 1) if filters.page > 1 else None,
        "next": link(filters.page + 1) if filters.page < pages else None,
        "first_link": link(1),
        "last_link": link(pages),
    }


async def alerts(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    filters = queries.Filters.parse(request.query)

    def read() -> tuple[list[Finding], int, list[str]]:
        with ctx.lock:
            found, total = queries.findings_page(ctx.store, ctx.registry, user, filters, ctx.policy)
            return found, total, ctx.store.rule_ids()

    found, total, rules = await asyncio.to_thread(read)
    visible = queries.visible_systems(ctx.registry, user)
    names = {s.id: s for s in visible}
    now = datetime.now(UTC)
    cookie = request.cookies.get(COOKIE, "")
    return _render(
        request,
        "alerts.html",
        page="alerts",
        findings=found,
        total=total,
        pager=_page_links(request, filters, total),
        q=filters,
        departments=queries.departments(visible),
        rules=rules,
        systems=names,
        due={f.id: due_at(f, ctx.policy) for f in found},
        overdue={f.id for f in found if is_overdue(f, ctx.policy, now)},
        csrf=ctx.auth.csrf_token(cookie),
        here=request.path_qs,
        now=now,
    )


async def overdue_page(request: web.Request) -> web.Response:
    """The SOC's escalation list: overdue findings per department and severity, each a link to the findings."""
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    now = datetime.now(UTC)
    systems, ids = queries.visible_systems(ctx.registry, user), None
    if not user.can(Permission.VIEW_ALL):
        ids = [s.id for s in systems]
    by_id = {s.id: s for s in systems}
    query = FindingQuery(system_ids=ids, overdue_cutoffs=queries.overdue_cutoffs(ctx.policy, now))

    def read() -> list[tuple[Any, ...]]:
        with ctx.lock:
            return ctx.store.finding_counts(query, "system_id", "severity")

    rows: dict[str, dict[str, Any]] = {}
    for sid, severity, n in await asyncio.to_thread(read):
        s = by_id.get(sid)
        if s is None:
            continue
        row = rows.setdefault(
            s.owner.department,
            {"department": s.owner.department, "contact": s.owner.email or s.owner.contact or "", "systems": set()},
        )
        row[severity] = row.get(severity, 0) + n
        row["total"] = row.get("total", 0) + n
        row["systems"].add(sid)
    ordered = sorted(rows.values(), key=lambda r: (-r.get("critical", 0), -r.get("high", 0), -r["total"]))
    return _render(request, "overdue.html", page="overdue", rows=ordered, sla=ctx.policy)


async def system_page(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    system = ctx.registry.system(request.match_info["system_id"])
    if system is None:
        raise web.HTTPNotFound(text="no such system")
    if not user.sees(system.owner.department):
        return _forbid(request, "another department's system")
    show_all = request.query.get("status") == "all"

    def read() -> tuple[list[Finding], dict[str, list[dict[str, Any]]], list[dict[str, Any]], int]:
        with ctx.lock:
            query = FindingQuery(system_ids=[system.id], statuses=None if show_all else ACTIVE_STATUSES)
            found = ctx.store.query_findings(query, limit=200)
            closed = ctx.store.count_findings(FindingQuery(system_ids=[system.id])) - len(found)
            return found, ctx.store.events_for([f.id for f in found]), ctx.store.latest_observations(system.id), closed

    found, history, observations, closed = await asyncio.to_thread(read)
    now = datetime.now(UTC)
    return _render(
        request,
        "system.html",
        page="system",
        system=system,
        findings=found,
        history=history,
        observations=observations,
        more=closed,
        show_all=show_all,
        due={f.id: due_at(f, ctx.policy) for f in found},
        overdue={f.id for f in found if is_overdue(f, ctx.policy, now)},
        csrf=ctx.auth.csrf_token(request.cookies.get(COOKIE, "")),
        here=request.path_qs,
    )


def _find(ctx: WebContext, user: User, finding_id: str) -> Finding | None:
    found = ctx.store.get_finding(finding_id)
    if found is None:
        return None
    system = ctx.registry.system(found.system_id)
    return found if system is not None and user.sees(system.owner.department) else None


def _date(text: str | None, what: str, allow_today: bool = False) -> tuple[datetime | None, str | None]:
    if not text:
        return None, None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None, f"'{text}' is not an ISO date"
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if (when.date() < now.date()) if allow_today else (when <= now):
        return None, f"'{text}' is in the past ({what})"
    return when, None


async def _act(
    ctx: WebContext,
    user: User,
    finding: Finding,
    action: str,
    reason: str,
    until: str | None,
    planned: str | None = None,
    recheck: bool = False,
) -> tuple[str | None, str | None]:
    """Apply an action; (the error text if it cannot be applied, what happened otherwise)."""
    event = ACTIONS.get(action)
    if event is None:
        return f"unknown action '{action}'", None
    needed = Permission.REMEDIATE if event in OWNER_EVENTS else Permission.ACT
    if not user.can(needed):
        return f"forbidden: role {user.role.value} cannot {action} (only operators suppress or accept risks)", None
    if not reason.strip():
        return "a reason is required", None
    expiry, error = _date(until, "until")
    if error:
        return error, None
    plan, error = _date(planned, "planned", allow_today=True)
    if error:
        return error, None
    now = datetime.now(UTC)
    try:
        with ctx.lock:
            if event == LifecycleEvent.RECTIFY:
                ctx.tracker.rectify(finding, user.name, reason.strip(), now, plan)
            else:
                ctx.tracker.act(finding, event, user.name, reason.strip(), now, expiry)
    except InvalidTransitionError as exc:
        return str(exc), None
    if not recheck:
        return None, None
    if ctx.recheck is None:
        return None, "re-check is not available here; the next sweep verifies the fix"
    if not ctx.may_recheck(finding.id, reason.strip()):
        return None, f"a re-check of this finding ran less than {RECHECK_COOLDOWN:.0f} s ago; the next sweep verifies"
    try:
        after = await ctx.recheck(finding.id, user.name)
    except SentinelError as exc:
        return None, f"re-check not run: {exc}"
    for name in finding.__slots__:
        setattr(finding, name, getattr(after, name))
    return None, f"re-check: now {after.status.value} ({after.status_reason})"


async def act_form(request: web.Request) -> web.StreamResponse:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    if not (user.can(Permission.ACT) or user.can(Permission.REMEDIATE)):
        return _forbid(request, "acting on findings")
    form = await request.post()
    if form.get("csrf") != ctx.auth.csrf_token(request.cookies.get(COOKIE, "")):
        return _forbid(request, "stale form; reload the page")
    finding = _find(ctx, user, request.match_info["finding_id"])
    if finding is None:
        raise web.HTTPNotFound(text="no such finding")
    action = str(form.get("action", ""))
    event = ACTIONS.get(action)
    if event is not None and event not in OWNER_EVENTS and not user.can(Permission.ACT):
        return _forbid(request, f"only operators {action}")
    error, info = await _act(
        ctx,
        user,
        finding,
        action,
        str(form.get("reason", "")),
        str(form.get("until") or "") or None,
        str(form.get("planned") or "") or None,
        form.get("recheck") in ("1", "on", "true"),
    )
    target = _local_path(str(form.get("next") or ""))
    flash = error or translator(_lang(request))["done"] + (f": {info}" if info else "")
    raise web.HTTPSeeOther(target + ("&" if "?" in target else "?") + "flash=" + quote(flash))


def _local_path(target: str) -> str:
    """Only a path on this site: never a scheme, a host, or a protocol-relative '//host' (open redirect)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/alerts"
    return target


# -- API -----------------------------------------------------------------------------------------


async def api_findings(request: web.Request) -> web.Response:
    """A page of findings (default 500, at most 5,000: `limit`, `offset` or `page`); X-Total-Count says how many
    match in all. Filters as on the alerts page: severity, status, tier, department, system, rule, category,
    age (24h, 7d, 30d, older30d), q, overdue, stale."""
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    filters = queries.Filters.parse(
        {**request.query, "per_page": request.query.get("limit", "")}, max_per_page=5000, default_per_page=500
    )
    try:
        offset = int(request.query["offset"]) if "offset" in request.query else None
    except ValueError:
        return web.json_response({"error": "offset must be a number"}, status=400)

    def read() -> tuple[list[Finding], int]:
        with ctx.lock:
            query = filters.query(ctx.registry, user, ctx.policy)
            if query is None:
                return [], 0
            start = offset if offset is not None else (filters.page - 1) * filters.per_page
            return (
                ctx.store.query_findings(query, limit=filters.per_page, offset=start, order=filters.sort),
                ctx.store.count_findings(query),
            )

    found, total = await asyncio.to_thread(read)
    return web.json_response([x.to_dict() for x in found], dumps=_dumps, headers={"X-Total-Count": str(total)})


async def api_finding(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    finding = _find(ctx, user, request.match_info["finding_id"])
    if finding is None:
        return web.json_response({"error": "no such finding"}, status=404)
    due = due_at(finding, ctx.policy)
    body = finding.to_dict() | {
        "history": ctx.store.finding_events(finding.id),
        "due_at": due.isoformat() if due else None,
        "overdue": is_overdue(finding, ctx.policy, datetime.now(UTC)),
    }
    return web.json_response(body, dumps=_dumps)


async def api_act(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        # A session cookie rides along on any same-site request; API writes need the token itself (no CSRF).
        return web.json_response({"error": "API actions need Authorization: Bearer TOKEN"}, status=401)
    action = request.match_info["action"]
    event = ACTIONS.get(action)
    needed = Permission.REMEDIATE if event in OWNER_EVENTS else Permission.ACT
    if not user.can(needed):
        return _forbid(request, f"role {user.role.value} cannot {action} findings")
    finding = _find(ctx, user, request.match_info["finding_id"])
    if finding is None:
        return web.json_response({"error": "no such finding"}, status=404)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if (
        not isinstance(body, dict)
        or not all(isinstance(body.get(k, ""), str | None) for k in ("until", "planned", "reason", "note"))
        or not isinstance(body.get("recheck", False), bool)
    ):
        return web.json_response(
            {"error": "body must be a JSON object: {reason, until?} (rectify: {note, planned?, recheck?})"}, status=400
        )
    reason = str(body.get("reason") or body.get("note") or "")
    error, info = await _act(
        ctx, user, finding, action, reason, body.get("until"), body.get("planned"), bool(body.get("recheck"))
    )
    if error:
        status = 403 if error.startswith("forbidden") else 409 if "cannot" in error else 400
        return web.json_response({"error": error}, status=status)
    return web.json_response(finding.to_dict() | ({"recheck": info} if info else {}), dumps=_dumps)


async def api_systems(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    systems = queries.visible_systems(ctx.registry, user)

    def read() -> tuple[dict[str, str], dict[str, dict[str, int]]]:
        with ctx.lock:
            counts: dict[str, dict[str, int]] = {}
            for sid, sev, n in ctx.store.finding_counts(
                FindingQuery(statuses=ACTIVE_STATUSES), "system_id", "severity"
            ):
                counts.setdefault(sid, {})[sev] = n
            return queries.system_states(ctx.store), counts

    states, counts = await asyncio.to_thread(read)
    return web.json_response(
        [
            s.model_dump(mode="json") | {"state": states.get(s.id, "unknown"), "open_findings": counts.get(s.id, {})}
            for s in systems
        ],
        dumps=_dumps,
    )


async def api_system(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    system = ctx.registry.system(request.match_info["system_id"])
    if system is None:
        return web.json_response({"error": "no such system"}, status=404)
    if not user.sees(system.owner.department):
        return _forbid(request, "another department's system")
    return web.json_response(
        {
            **system.model_dump(mode="json"),
            "findings": [f.to_dict() for f in ctx.store.list_findings(system_ids=[system.id])],
            "observations": ctx.store.latest_observations(system.id),
        },
        dumps=_dumps,
    )


async def api_overview(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    data = await asyncio.to_thread(_overview_locked, ctx, user)
    return web.json_response(
        {
            "at": data["now"].isoformat(),
            "totals": data["totals"].as_dict(),
            "tiers": [r.as_dict() for r in data["tiers"]],
            "departments": [r.as_dict() for r in data["depts"]],
            "tiles": {
                tier: [
                    {
                        "department": x.department,
                        "worst": x.worst,
                        **queries.GroupRow(
                            x.department, x.systems, x.up, x.down, x.unknown, x.open_by_severity, x.certs_expiring
                        ).as_dict(),
                    }
                    for x in tiles
                ]
                for tier, tiles in data["tiles"].items()
            },
            "availability": data["availability"],
            "changes_24h": data["changes"],
            "top_systems": [
                {"system": r["system"].id, "score": r["score"], "open": dict(r["open"]), "state": r["state"]}
                for r in data["top_systems"]
            ],
            "newest_critical": [f.to_dict() for f in data["critical"]],
            "stale": data["stale"],
            "overdue": data["overdue"],
            "trend": data["trend"],
            "freshness": data["freshness"],
            "sweeps_running": data["sweeps"],
        },
        dumps=_dumps,
    )


async def api_sweeps(request: web.Request) -> web.Response:
    """Sweeps in progress (jobs done of total, findings seen so far) and the last finished ones."""
    ctx = request.app[CTX_KEY]
    with ctx.lock:
        running = ctx.store.running_sweeps(datetime.now(UTC))
        recent = ctx.store.sweeps(10)
    for r in recent:
        r["summary"] = json.loads(r["summary"]) if r.get("summary") else None
    return web.json_response({"running": running, "recent": recent}, dumps=_dumps)


async def api_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events for a wall screen: `changed` whenever the store changed (a sweep, an action), and a
    comment every 15 s so proxies keep the connection. Ends after a few minutes; EventSource reconnects."""
    ctx = request.app[CTX_KEY]
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    with ctx.lock:
        seen = ctx.version()
    await resp.write(f"retry: 5000\nevent: hello\ndata: {seen[0]}.{seen[1]}\n\n".encode())
    started = last_beat = time.monotonic()
    while not ctx.closing.is_set() and time.monotonic() - started < STREAM_SECONDS:
        try:
            await asyncio.wait_for(ctx.closing.wait(), STREAM_POLL)
            break
        except TimeoutError:
            pass
        with ctx.lock:
            now = ctx.version()
        try:
            if now != seen:
                seen = now
                await resp.write(f"event: changed\ndata: {now[0]}.{now[1]}\n\n".encode())
            elif time.monotonic() - last_beat >= 15:
                last_beat = time.monotonic()
                await resp.write(b": keep-alive\n\n")
        except (ConnectionResetError, RuntimeError):
            break
    return resp


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[CTX_KEY].is_ready()
    return web.json_response({"ready": ready}, status=200 if ready else 503)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)


def add_web_routes(app: web.Application, ctx: WebContext) -> None:
    """Mount the view and the API on an aiohttp application (shared with /metrics by `serve` and `run`)."""
    app[CTX_KEY] = ctx
    app.middlewares.append(authenticate)

    async def closing(_: web.Application) -> None:
        ctx.closing.set()  # live streams end, so shutdown does not wait for them

    app.on_shutdown.append(closing)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/logout", logout)
    app.router.add_get("/", overview)
    app.router.add_get("/alerts", alerts)
    app.router.add_get("/overdue", overdue_page)
    app.router.add_get("/systems/{system_id}", system_page)
    app.router.add_post("/findings/{finding_id}/act", act_form)
    app.router.add_get("/api/overview", api_overview)
    app.router.add_get("/api/findings", api_findings)
    app.router.add_get("/api/findings/{finding_id}", api_finding)
    app.router.add_post("/api/findings/{finding_id}/{action}", api_act)
    app.router.add_get("/api/systems", api_systems)
    app.router.add_get("/api/systems/{system_id}", api_system)
    app.router.add_get("/api/sweeps", api_sweeps)
    app.router.add_get("/api/stream", api_stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if ctx.estate is not None:
        from sentinel.web.estate import add_estate_routes

        add_estate_routes(app, ctx.estate)
