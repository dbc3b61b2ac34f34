"""``create_app(settings)``: the Starlette application and its lifespan.

Start-up order: database engines → migrations → writes and the service (+ webhook and
push hooks) → reads, the hub and the revocations (loaded, then polled) → broker
listener → sweeper → timers → outbox worker.
Shut-down order: close sockets with 1012 (clients reconnect elsewhere) and drain them,
stop the timers, finish accepted writes, stop the outbox worker (attempts in flight
finish or are released), stop the broker listener, stop the hub's tasks, dispose the
engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from server.api import (
    audiences,
    demo,
    docs,
    events,
    me,
    ops,
    processes,
    subscriptions,
    tasks,
    users,
    ws,
)
from server.api import metrics as metrics_api
from server.api import preferences as preferences_api
from server.api.common import JSON, Parts
from server.audiences import Audiences
from server.broker import Broker
from server.broker.memory import MemoryBroker
from server.broker.redis import RedisBroker
from server.db import DATABASE_ERRORS, make_engines, sqlstate
from server.delivery.side import Delivery
from server.errors import ApiError, CloseCode
from server.feedlog import SqlFeedLog
from server.gate import Gate
from server.hub import Hub
from server.limits import install as install_limits
from server.metrics import Metrics
from server.migrate import upgrade
from server.reads import Reads
from server.revocations import Revocations
from server.service import Service
from server.settings import Settings
from server.shortcuts import Shortcuts
from server.timers import Timers
from server.writes import Writes

log = logging.getLogger("taskbell.app")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def make_broker(settings: Settings) -> Broker:
    if settings.redis_url:
        return RedisBroker(settings.redis_url)
    return MemoryBroker()


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSON(exc.body(), status_code=exc.status, headers=exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
    return JSON(
        {"error": {"code": code, "message": message}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def db_error(request: Request, exc: Exception) -> Response:
    """Only a database that is away, busy or locked is a 503 (retry later): a value the
    database refuses (SQLSTATE class 22, e.g. a NUL in text on PostgreSQL) is the
    request's fault and a 400 that retrying cannot fix; a statement it cannot run
    (class 42) is ours, a 500."""
    state = sqlstate(exc)
    if state.startswith("22"):
        log.info("the database refused a value on %s (SQLSTATE %s)", request.url.path, state)
        return JSON(
            {"error": {"code": "bad_value", "message": "a value in this request is unusable"}},
            status_code=400,
        )
    if state.startswith("42"):
        return await server_error(request, exc)
    log.warning("database error on %s: %s", request.url.path, type(exc).__name__)
    body = {
        "error": {
            "code": "database_unavailable",
            "message": "the database is unreachable; retry shortly",
        }
    }
    return JSON(body, status_code=503, headers={"Retry-After": "1"})


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client hung up before its body arrived: nothing to answer, nothing broken."""
    log.info("client went away before sending its whole body on %s", request.url.path)
    return JSON(
        {"error": {"code": "client_disconnected", "message": "the client went away"}},
        status_code=400,
    )


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return JSON(
        {"error": {"code": "internal_error", "message": "internal server error"}}, status_code=500
    )


def page_headers(settings: Settings) -> dict[str, str]:
    """The panel has no inline scripts or styles and talks only to its own server; who
    may frame it is ``TASKBELL_FRAME_ANCESTORS`` (the host application's origin). ``*``
    leaves the directive out: anyone, including pages with an opaque origin (a
    sandboxed or ``about:blank`` host page), which no source expression can name."""
    ancestors = settings.frame_ancestors.strip()
    framing = "" if ancestors == "*" else f"; frame-ancestors {ancestors}"
    return {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
            f"base-uri 'none'; form-action 'self'{framing}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


FAVICON = (
    b"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'>"
    b"<rect width='32' height='32' rx='8' fill='#3056d3'/>"
    b"<path d='M22 13a6 6 0 0 0-12 0c0 6-2.5 7.5-2.5 7.5h17S22 19 22 13' fill='none' "
    b"stroke='white' stroke-width='2.2' stroke-linejoin='round'/>"
    b"<path d='M14.3 24a2 2 0 0 0 3.4 0' fill='none' stroke='white' stroke-width='2.2' "
    b"stroke-linecap='round'/></svg>"
)


class WebFiles(StaticFiles):
    """The panel's modules and styles: revalidated on every load (ETag), so an upgrade
    never leaves a browser running yesterday's modules against today's server."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.media_type and "javascript" in response.media_type:
            # The embeddable bell (``/embed.js``) imports the panel's modules from a host
            # page of another origin, and module scripts need CORS: public files only.
            response.headers["Access-Control-Allow-Origin"] = "*"
        return response


EMBED_HEADERS = {
    # Public, the same for everyone: any host page may load it (module scripts need CORS);
    # cached briefly, so an upgrade reaches host pages within minutes.
    "Access-Control-Allow-Origin": "*",
    "Cache-Control": "public, max-age=300",
    "X-Content-Type-Options": "nosniff",
}


async def embed(request: Request) -> Response:
    """The embeddable bell, ``<taskbell-bell token="...">`` (web/embed.js)."""
    return FileResponse(WEB_DIR / "embed.js", media_type="text/javascript", headers=EMBED_HEADERS)


async def index(request: Request) -> Response:
    headers: dict[str, str] = request.app.state.page_headers
    return FileResponse(WEB_DIR / "index.html", headers=headers)


async def favicon(request: Request) -> Response:
    return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


def create_app(settings: Settings) -> Starlette:
    """Build the app. Nothing connects until the lifespan starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engines = make_engines(settings.database_url)
        if settings.auto_migrate:
            await asyncio.to_thread(upgrade, settings.database_url)
        broker = make_broker(settings)
        service = Service(Writes(engines), broker)
        delivery = Delivery.build(settings, engines, service)
        app.state.delivery = delivery
        hub = Hub(
            SqlFeedLog(engines, replay_limit=settings.replay_limit),
            sweep_interval=settings.sweep_interval_s,
            queue_limit=settings.send_queue_size,
            heartbeat_s=settings.heartbeat_s,
            interest=broker,
        )
        revocations = Revocations(engines)
        await revocations.start(
            lambda tenant, user: hub.close_user(
                tenant, user, CloseCode.NOT_AUTHENTICATED, "revoked"
            )
        )
        audience_poller = Audiences(engines, hub.refollow)
        p = Parts(settings, Reads(engines), broker, hub, service, revocations, tokens=edge.subjects)
        app.state.parts = p
        app.state.background = set()
        await broker.start(hub.on_envelope, hub.resync)
        hub.start()
        await audience_poller.start()
        timers = Timers(p.service, interval_s=settings.timer_interval_s)
        hub.metrics = service.metrics = timers.metrics = delivery.worker.metrics = app.state.metrics
        if delivery.push_hook is not None:
            delivery.push_hook.metrics = app.state.metrics
        timers.start()
        delivery.start()
        p.ready = True
        log.info(
            "taskbell ready",
            extra={"broker": broker.describe(), "database": engines.dialect, "demo": settings.demo},
        )
        try:
            yield
        finally:
            p.ready = False
            conns = hub.connections()
            hub.close_all(CloseCode.SERVICE_RESTART, "server restarting")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True), 5
                )
            background = list(app.state.background)
            if background:
                # Demo trickles: let a write in progress finish, then stop them.
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
            await timers.stop()
            await p.service.close()
            await delivery.stop()
            await broker.stop()
            await hub.stop()
            await revocations.stop()
            await audience_poller.stop()
            await engines.dispose()
            log.info("taskbell stopped")

    routes: list[Any] = [
        Route("/", index, methods=["GET", "HEAD"]),
        *ops.routes,
        *processes.routes,
        *tasks.routes,
        *me.routes,
        *demo.routes,
        *subscriptions.routes,
        *users.routes,
        *audiences.routes,
        *events.routes,
        *ws.routes,
        *docs.routes,
        *metrics_api.routes,
        *preferences_api.routes,
        Route("/favicon.ico", favicon, methods=["GET", "HEAD"]),
        Route("/embed.js", embed, methods=["GET", "HEAD"]),
        Mount("/static", app=WebFiles(directory=WEB_DIR, check_dir=False), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: api_error,
        HTTPException: http_error,
        # A read that meets the database away (or needs a new connection while
        # PostgreSQL refuses one) answers 503, not 500.
        **dict.fromkeys(DATABASE_ERRORS, db_error),
        ClientDisconnect: client_gone,
        Exception: server_error,
    }
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.state.page_headers = page_headers(settings)
    app.state.metrics = Metrics()
    app.state.metrics.watch(lambda: vars(app.state.parts) if hasattr(app.state, "parts") else {})
    # One layer for every edge check (request ids, origins, rates, bodies, security
    # headers, the access log), and /ws straight to its endpoint (server/gate.py).
    edge = install_limits(app, settings)
    # The task routes (the producer's hot path) are matched in the gate, before the
    # router: nothing in front of them in ``routes`` takes their paths.
    shortcuts = Shortcuts(tasks.routes, handlers)
    app.add_middleware(
        Gate, settings=settings, edge=edge, sockets={"/ws": ws.ws_endpoint}, shortcuts=shortcuts
    )
    return app
