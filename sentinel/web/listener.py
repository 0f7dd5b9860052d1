"""One HTTP listener for `serve` and `run`: the web view and API, /metrics and /probe, health endpoints."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.log import server_logger

from sentinel.config.settings import Settings
from sentinel.engine.loader import load_rules
from sentinel.errors import InputError
from sentinel.exporter.blackbox import ProbeRequestError, probe_families
from sentinel.exporter.collector import FamilySource, StoreExporter
from sentinel.exporter.family import render_families
from sentinel.exporter.outbox import outbox_families
from sentinel.models import Finding
from sentinel.paths import shipped_rules_dir
from sentinel.registry.models import Registry
from sentinel.store import SqliteStore
from sentinel.web.auth import Authenticator, Permission
from sentinel.web.estate import estate_reader
from sentinel.web.server import WebContext, add_web_routes

if TYPE_CHECKING:
    from sentinel.collectors.network import ScopedNetwork
    from sentinel.sinks.elasticsearch.estate import EstateReader

log = logging.getLogger(__name__)
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: the parser callback that raised, by name (aiohttp's C parser) -> what the client sent too much of
_PARSER_PARTS = {
    "cb_on_url": "URL",
    "cb_on_status": "status line",
    "cb_on_reason": "reason phrase",
    "cb_on_header_field": "header name",
    "cb_on_header_value": "header value",
    "_process_header": "header",
}
#: how much of the offending text a log line quotes
_QUOTE = 40


def _bad_request_part(exc: BaseException, text: bytes) -> str:
    """What part of the request the parser refused: from the parser callback that raised (aiohttp's C parser),
    else (the pure-Python parser quotes the whole line) from the shape of the line. Best effort."""
    tb: TracebackType | None = exc.__traceback__
    part = None
    while tb is not None:
        part = _PARSER_PARTS.get(tb.tb_frame.f_code.co_name.rpartition(".")[2], part)  # Cython: module.name
        tb = tb.tb_next
    if part is not None:
        return part
    if re.match(rb"[A-Z]{3,10} ", text):
        return "request line"
    return "header" if b":" in text else "request line or header"


def describe_bad_request(exc: HttpProcessingError) -> str:
    """One line about a request the HTTP parser refused: what was wrong, a short quote of it, the answer."""
    if isinstance(exc, LineTooLong) and len(exc.args) >= 2:
        text, limit = exc.args[0], exc.args[1]
        quoted = bytes(text).removesuffix(b"...") if isinstance(text, bytes | bytearray) else str(text).encode()
        start = ascii(quoted[:_QUOTE].decode("latin-1"))
        what = f"{_bad_request_part(exc, quoted)} longer than {limit} bytes (starts {start}...)"
    else:
        what = ascii(str(exc.message)[:200])
    return f"{what}; answered {exc.code}"


class ParseErrorLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's server logger, except that a request its HTTP parser refuses (a 100 kB URL or header, a
    malformed request line: the client's doing, not a fault of ours) is one WARNING line with the client's
    address instead of an ERROR with a traceback. Everything else goes to aiohttp's logger unchanged."""

    def __init__(self, logger: logging.Logger = server_logger) -> None:
        super().__init__(logger, {})

    def exception(
        self, msg: object, *args: object, exc_info: Any = True, stack_info: bool = False, **kwargs: Any
    ) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(exc, HttpProcessingError) and exc.code and 400 <= exc.code < 500:
            client = args[0] if args else "unknown client"
            log.warning("bad HTTP request from %s: %s", client, describe_bad_request(exc))
            return
        extra: Mapping[str, object] | None = kwargs.pop("extra", None)
        self.logger.exception(msg, *args, exc_info=exc_info, stack_info=stack_info, extra=extra, **kwargs)


def add_metrics_routes(
    app: web.Application, exporter: StoreExporter, token: str | None = None, auth: Authenticator | None = None
) -> None:
    """Prometheus exposition and the blackbox-compatible /probe, rendered off the event loop.

    Who sees what: with `serve.metrics_token`, that token (or a web user who sees the whole estate) is needed.
    Without one, but with web users configured, anonymous scrapers get the estate by tier only (per-system and
    per-department detail needs a token: it is what the web view keeps from other departments). With neither,
    /metrics is open as before (a metrics-only deployment)."""

    def detail_allowed(request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        if token is not None and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
        if auth is not None and auth.has_users and given.startswith("Bearer "):
            user = auth.by_token(given[7:].strip())
            if user is not None and user.can(Permission.VIEW_ALL):
                return True
        return token is None and (auth is None or not auth.has_users)

    def allowed(request: web.Request) -> bool:
        return detail_allowed(request)

    async def metrics(request: web.Request) -> web.Response:
        detail = detail_allowed(request)
        if not detail and token is not None:
            return web.Response(status=401, text="metrics need Authorization: Bearer TOKEN (serve.metrics_token)")
        try:
            body = await asyncio.to_thread(exporter.render, True, detail)
        except sqlite3.Error as exc:
            log.error("reading the store for /metrics failed: %s", exc)
            return web.Response(status=503, text=f"the store cannot be read: {exc}")
        return web.Response(body=body, headers={"Content-Type": METRICS_TYPE})

    async def probe(request: web.Request) -> web.Response:
        if not allowed(request):
            return web.Response(
                status=401, text="/probe needs Authorization: Bearer TOKEN (serve.metrics_token or a web user's)"
            )

        def render() -> bytes:
            with exporter.lock:
                families = probe_families(
                    exporter.store, request.query.get("target", ""), request.query.get("module", "")
                )
            return render_families(families)

        try:
            body = await asyncio.to_thread(render)
        except ProbeRequestError as exc:
            return web.Response(status=exc.status, text=exc.message)
        return web.Response(body=body, headers={"Content-Type": METRICS_TYPE})

    async def healthy(_: web.Request) -> web.Response:
        return web.Response(text="OK")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/probe", probe)
    app.router.add_get("/-/healthy", healthy)


DEFAULT_LISTEN = "127.0.0.1:9108"


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `:PORT` (all interfaces must be asked for explicitly with 0.0.0.0)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"'{text}' is not HOST:PORT (for example {DEFAULT_LISTEN})")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def build_listener(
    settings: Settings,
    registry: Callable[[], Registry | None],
    ready: Callable[[], bool] = lambda: True,
    compliance_interval: float = 60.0,
    network: Callable[[], ScopedNetwork] | None = None,
) -> web.Application:
    """`network`: the running monitor's shared ScopedNetwork, so an owner's re-check counts against the same
    per-target rate limits and circuit breaker as the sweeps (without it each re-check gets its own)."""
    app = web.Application(handler_args={"logger": ParseErrorLog()})
    current = registry()
    auth: Authenticator | None = None
    if current is not None:
        web_store = SqliteStore(settings.store)
        try:
            auth = Authenticator(list(settings.web.users), session_seconds=int(settings.web.session_hours * 3600))
        except ValueError as exc:  # a token file or variable that cannot be read
            raise InputError([settings.locate(("web", "users"), f"web.{exc}")]) from None
        first = current

        def now_registry() -> Registry:
            return registry() or first

        async def recheck(finding_id: str, actor: str) -> Finding:
            from sentinel.app import Sentinel

            sentinel = Sentinel(settings, registry=now_registry())
            try:
                return await sentinel.recheck(finding_id, actor, net=network() if network is not None else None)
            finally:
                sentinel.close()

        # custom rule folders bring their own Chinese text; the shipped rules' is loaded once per process
        web_rules = {r.id: r for r in load_rules(list(settings.rules))} if settings.rules else None
        estate = estate_reader(settings)  # the city's view of every site, when `web.estate: elasticsearch`
        ctx = WebContext(
            web_store,
            now_registry,
            auth,
            settings.web.language,
            ready,
            policy=settings.findings,
            recheck=recheck,
            rules=web_rules,
            estate=estate,
        )
        add_web_routes(app, ctx)
        app.on_cleanup.append(_closer(web_store))
        if estate is not None:
            app.on_cleanup.append(_closer(estate))
    metrics_store = SqliteStore(settings.store)  # its own connection: scrapes render in worker threads
    live: list[FamilySource] = [outbox_families]
    compliance = None
    if current is not None and compliance_interval > 0:
        from sentinel.exporter.compliance import ComplianceFamilies

        rules = load_rules(list(settings.rules) or [shipped_rules_dir()])
        compliance = ComplianceFamilies(settings.store, current, rules, interval=compliance_interval)
        live.append(compliance)
    token = settings.serve.metrics_token.get_secret_value() if settings.serve.metrics_token else None
    add_metrics_routes(app, StoreExporter(metrics_store, current, live), token, auth)
    if compliance is not None:
        started = compliance

        async def start(_: web.Application) -> None:
            started.start()

        async def stop(_: web.Application) -> None:
            started.stop()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)
    app.on_cleanup.append(_closer(metrics_store))
    if current is None:
        app.router.add_get("/healthz", _ok)
        app.router.add_get("/readyz", _ok)
    return app


def _closer(store: SqliteStore | EstateReader) -> Callable[[web.Application], Awaitable[None]]:
    async def close(_: web.Application) -> None:
        store.close()

    return close


async def _ok(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve_until_stopped(app: web.Application, listen: str, on_ready: Callable[[str], None]) -> None:
    """Serve until SIGTERM or SIGINT."""
    import signal

    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port)).start()
    except OSError:
        await runner.cleanup()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    on_ready(f"http://{listen}")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
