"""``create_app(settings)``: the Starlette application and its lifespan.

Start-up order: database engines → migrations → writes and the service (+ webhook and
push hooks) → reads and the hub → broker listener → sweeper → timers → outbox worker.
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
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from server.api import demo, events, me, ops, processes, subscriptions, tasks, ws
from server.api.common import JSON, Parts
from server.broker import Broker
from server.broker.memory import MemoryBroker
from server.broker.redis import RedisBroker
from server.db import DATABASE_ERRORS, make_engines
from server.delivery.side import Delivery
from server.errors import ApiError, CloseCode, PayloadTooLarge
from server.feedlog import SqlFeedLog
from server.hub import Hub
from server.migrate import upgrade
from server.reads import Reads
from server.service import Service
from server.settings import Settings
from server.timers import Timers
from server.writes import Writes

log = logging.getLogger("taskbell.app")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


def make_broker(settings: Settings) -> Broker:
    if settings.redis_url:
        return RedisBroker(settings.redis_url)
    return MemoryBroker()


class WebSocketFastPath:
    """Hands ``/ws`` straight to its endpoint. Routing and Starlette's exception
    middleware would otherwise keep a stack of frames alive for every socket's whole life
    (about 5 KB each); the endpoint handles every error it expects itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await ws.ws_endpoint(WebSocket(scope, receive, send))
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Answers 413 (JSON) for request bodies over the limit, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _send_error(send, PayloadTooLarge(f"the body is over {self.limit} bytes"))
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLarge(f"the body is over {self.limit} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge as exc:
            if not started:
                await _send_error(send, exc)


async def _send_error(send: Send, exc: ApiError) -> None:
    response = JSON(exc.body(), status_code=exc.status, headers=exc.headers)
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})


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
    log.warning("database error on %s: %s", request.url.path, type(exc).__name__)
    body = {
        "error": {
            "code": "database_unavailable",
            "message": "the database is unreachable; retry shortly",
        }
    }
    return JSON(body, status_code=503, headers={"Retry-After": "1"})


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return JSON(
        {"error": {"code": "internal_error", "message": "internal server error"}}, status_code=500
    )


# The panel has no inline scripts or styles and talks only to its own server.
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
        "base-uri 'none'; form-action 'self'"
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
        return response


async def index(request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html", headers=PAGE_HEADERS)


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
        push = Delivery.build(settings, engines, service)
        app.state.push = push
        hub = Hub(
            SqlFeedLog(engines, replay_limit=settings.replay_limit),
            sweep_interval=settings.sweep_interval_s,
            queue_limit=settings.send_queue_size,
            heartbeat_s=settings.heartbeat_s,
            interest=broker,
        )
        p = Parts(settings, Reads(engines), broker, hub, service)
        app.state.parts = p
        app.state.background = set()
        await broker.start(hub.on_envelope, hub.resync)
        hub.start()
        timers = Timers(p.service, interval_s=settings.timer_interval_s)
        timers.start()
        push.start()
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
            await push.stop()
            await broker.stop()
            await hub.stop()
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
        *events.routes,
        *ws.routes,
        Route("/favicon.ico", favicon, methods=["GET", "HEAD"]),
        Mount("/static", app=WebFiles(directory=WEB_DIR, check_dir=False), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        ApiError: api_error,
        HTTPException: http_error,
        # A read that meets the database away (or needs a new connection while
        # PostgreSQL refuses one) answers 503, not 500.
        **dict.fromkeys(DATABASE_ERRORS, db_error),
        Exception: server_error,
    }
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(WebSocketFastPath)
    return app
