"""The situational-awareness view (`/`, `/alerts`, `/systems/ID`) and its JSON API (`/api/...`).

Pages use a signed session cookie set by `/login`; the API takes `Authorization: Bearer TOKEN`
(or the session cookie). No credentials: 401. A role without the right, or an owner asking for
another department's system: 403. Every action is recorded with who and why by the tracker.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from sentinel.findings.lifecycle import InvalidTransitionError, LifecycleEvent
from sentinel.findings.tracker import FindingTracker
from sentinel.models import Finding, FindingStatus, Severity
from sentinel.registry.models import Registry
from sentinel.store import SqliteStore
from sentinel.web import queries
from sentinel.web.auth import Authenticator, Permission, User
from sentinel.web.i18n import LANGUAGES, translator

USER_KEY = web.RequestKey("user", User)
COOKIE = "sentinel_session"
SEVERITIES = [s.value for s in reversed(Severity)]
ACTIONS = {
    "acknowledge": LifecycleEvent.ACKNOWLEDGE,
    "suppress": LifecycleEvent.SUPPRESS,
    "resolve": LifecycleEvent.RESOLVE,
    "accept-baseline": LifecycleEvent.ACCEPT_BASELINE,  # change/baseline rules: the current value becomes the norm
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebContext:
    """What the handlers need; the registry can be swapped on reload."""

    def __init__(
        self,
        store: SqliteStore,
        registry: Registry | Callable[[], Registry],
        auth: Authenticator,
        language: str = "zh",
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self._registry = registry
        self.auth = auth
        self.language = language
        self.tracker = FindingTracker(store)
        self.is_ready = ready
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
        )

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
        t=translator(lang),
        lang=lang,
        user=user,
        severities=SEVERITIES,
        flash=request.query.get("flash"),
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


def _overview_data(ctx: WebContext, user: User) -> dict[str, Any]:
    systems = queries.visible_systems(ctx.registry, user)
    health = queries.system_health(ctx.store, systems)
    totals = queries.GroupRow("all")
    for row in queries.group_rows(health, "tier"):
        totals.systems += row.systems
        totals.up, totals.down, totals.unknown = (
            totals.up + row.up,
            totals.down + row.down,
            totals.unknown + row.unknown,
        )
        totals.open_by_severity.update(row.open_by_severity)
        totals.certs_expiring += row.certs_expiring
    ids = [s.id for s in systems]
    critical = (
        ctx.store.list_findings(
            statuses=[FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED], min_severity=Severity.CRITICAL, system_ids=ids
        )
        if ids
        else []
    )
    critical.sort(key=lambda f: f.first_seen, reverse=True)
    return {
        "totals": totals,
        "tiers": queries.group_rows(health, "tier"),
        "depts": queries.group_rows(health, "department"),
        "critical": critical[:10],
        "trend": queries.trend(ctx.store, ids),
    }


async def overview(request: web.Request) -> web.Response:
    return _render(request, "overview.html", page="overview", **_overview_data(request.app[CTX_KEY], request[USER_KEY]))


def _filters(request: web.Request) -> dict[str, Any]:
    q = request.query
    status = q.get("status") or "active"
    statuses: list[FindingStatus] | None
    if status == "all":
        statuses = None
    elif status == "active":
        statuses = [FindingStatus.OPEN, FindingStatus.ACKNOWLEDGED]
    else:
        statuses = [FindingStatus(status)] if status in FindingStatus.__members__.values() else []
    severity = q.get("severity") or None
    return {
        "statuses": statuses,
        "min_severity": Severity(severity) if severity in SEVERITIES else None,
        "system_id": q.get("system") or None,
        "department": q.get("department") or None,
        "tier": q.get("tier") or None,
        "text": q.get("q") or None,
        "_status": status,
        "_severity": severity,
    }


async def alerts(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    f = _filters(request)
    found = queries.findings_for(ctx.store, ctx.registry, user, **{k: v for k, v in f.items() if not k.startswith("_")})
    found.sort(key=lambda x: (x.severity.rank, x.first_seen), reverse=True)
    visible = queries.visible_systems(ctx.registry, user)
    cookie = request.cookies.get(COOKIE, "")
    return _render(
        request,
        "alerts.html",
        page="alerts",
        findings=found,
        q={
            "severity": f["_severity"],
            "status": f["_status"],
            "tier": f["tier"],
            "department": f["department"],
            "text": f["text"],
        },
        departments=queries.departments(visible),
        dept_of={s.id: s.owner.department for s in visible},
        can_act=user.can(Permission.ACT),
        csrf=ctx.auth.csrf_token(cookie),
        here=request.path_qs,
    )


async def system_page(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    system = ctx.registry.system(request.match_info["system_id"])
    if system is None:
        raise web.HTTPNotFound(text="no such system")
    if not user.sees(system.owner.department):
        return _forbid(request, "another department's system")
    found = ctx.store.list_findings(system_ids=[system.id])
    return _render(
        request,
        "system.html",
        page="system",
        system=system,
        findings=found,
        history={f.id: ctx.store.finding_events(f.id) for f in found},
        observations=ctx.store.latest_observations(system.id),
    )


def _find(ctx: WebContext, user: User, finding_id: str) -> Finding | None:
    found = ctx.store.get_finding(finding_id)
    if found is None:
        return None
    system = ctx.registry.system(found.system_id)
    return found if system is not None and user.sees(system.owner.department) else None


def _act(ctx: WebContext, user: User, finding: Finding, action: str, reason: str, until: str | None) -> str | None:
    """Apply an operator action; the error text if it cannot be applied."""
    event = ACTIONS.get(action)
    if event is None:
        return f"unknown action '{action}'"
    if not reason.strip():
        return "a reason is required"
    expiry = None
    if until:
        try:
            expiry = datetime.fromisoformat(until)
        except ValueError:
            return f"'{until}' is not an ISO date"
        expiry = expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)
        if expiry <= datetime.now(UTC):
            return f"'{until}' is in the past"
    try:
        ctx.tracker.act(finding, event, user.name, reason.strip(), datetime.now(UTC), expiry)
    except InvalidTransitionError as exc:
        return str(exc)
    return None


async def act_form(request: web.Request) -> web.StreamResponse:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    if not user.can(Permission.ACT):
        return _forbid(request, "acting on findings")
    form = await request.post()
    if form.get("csrf") != ctx.auth.csrf_token(request.cookies.get(COOKIE, "")):
        return _forbid(request, "stale form; reload the page")
    finding = _find(ctx, user, request.match_info["finding_id"])
    if finding is None:
        raise web.HTTPNotFound(text="no such finding")
    error = _act(
        ctx,
        user,
        finding,
        str(form.get("action", "")),
        str(form.get("reason", "")),
        str(form.get("until") or "") or None,
    )
    target = _local_path(str(form.get("next") or ""))
    flash = error or translator(_lang(request))["done"]
    raise web.HTTPSeeOther(target + ("&" if "?" in target else "?") + "flash=" + quote(flash))


def _local_path(target: str) -> str:
    """Only a path on this site: never a scheme, a host, or a protocol-relative '//host' (open redirect)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/alerts"
    return target


# -- API -----------------------------------------------------------------------------------------


async def api_findings(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    f = _filters(request)
    found = queries.findings_for(ctx.store, ctx.registry, user, **{k: v for k, v in f.items() if not k.startswith("_")})
    return web.json_response([x.to_dict() for x in found], dumps=_dumps)


async def api_finding(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    finding = _find(ctx, user, request.match_info["finding_id"])
    if finding is None:
        return web.json_response({"error": "no such finding"}, status=404)
    body = finding.to_dict() | {"history": ctx.store.finding_events(finding.id)}
    return web.json_response(body, dumps=_dumps)


async def api_act(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        # A session cookie rides along on any same-site request; API writes need the token itself (no CSRF).
        return web.json_response({"error": "API actions need Authorization: Bearer TOKEN"}, status=401)
    if not user.can(Permission.ACT):
        return _forbid(request, f"role {user.role.value} cannot act on findings")
    finding = _find(ctx, user, request.match_info["finding_id"])
    if finding is None:
        return web.json_response({"error": "no such finding"}, status=404)
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("until", ""), str | None):
        return web.json_response({"error": "body must be a JSON object: {reason, until?}"}, status=400)
    error = _act(ctx, user, finding, request.match_info["action"], str(body.get("reason", "")), body.get("until"))
    if error:
        return web.json_response({"error": error}, status=409 if "cannot" in error else 400)
    return web.json_response(finding.to_dict(), dumps=_dumps)


async def api_systems(request: web.Request) -> web.Response:
    ctx, user = request.app[CTX_KEY], request[USER_KEY]
    systems = queries.visible_systems(ctx.registry, user)
    health = queries.system_health(ctx.store, systems)
    return web.json_response(
        [
            s.model_dump(mode="json")
            | {"state": health[s.id].state, "open_findings": dict(health[s.id].open_by_severity)}
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
    data = _overview_data(request.app[CTX_KEY], request[USER_KEY])

    def row(r: queries.GroupRow) -> dict[str, Any]:
        return {
            "name": r.name,
            "systems": r.systems,
            "up": r.up,
            "down": r.down,
            "unknown": r.unknown,
            "open_by_severity": dict(r.open_by_severity),
            "certs_expiring": r.certs_expiring,
        }

    return web.json_response(
        {
            "totals": row(data["totals"]),
            "tiers": [row(r) for r in data["tiers"]],
            "departments": [row(r) for r in data["depts"]],
            "newest_critical": [f.to_dict() for f in data["critical"]],
            "trend": data["trend"],
        },
        dumps=_dumps,
    )


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
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/logout", logout)
    app.router.add_get("/", overview)
    app.router.add_get("/alerts", alerts)
    app.router.add_get("/systems/{system_id}", system_page)
    app.router.add_post("/findings/{finding_id}/act", act_form)
    app.router.add_get("/api/overview", api_overview)
    app.router.add_get("/api/findings", api_findings)
    app.router.add_get("/api/findings/{finding_id}", api_finding)
    app.router.add_post("/api/findings/{finding_id}/{action}", api_act)
    app.router.add_get("/api/systems", api_systems)
    app.router.add_get("/api/systems/{system_id}", api_system)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
