"""``Gate``: the one ASGI layer in front of the app, every check of the edge in one pass.

For an HTTP request, in this order (each refusal is the usual JSON error and, like
every answer, carries the request id and is logged):

1. the request id (``server.logs``): from a sane ``X-Request-ID`` or made up, set for
   the request's log lines, echoed in the answer;
2. the origin allow-list on the event stream (``server.origins``): 403;
3. the request rate of the caller (``server.limits``): 429 with ``Retry-After``; the
   caller it checked (``api.common.Checked``) is left in the scope, so the endpoint does
   not verify the same token again;
4. the body: 413 for one declared (``Content-Length``) or streamed over the limit, 408
   for one not fully in within ``TASKBELL_BODY_TIMEOUT_SECONDS`` of the app getting the
   request (``server.guard``);
5. the answer's headers: ``X-Request-ID``; ``X-Content-Type-Options: nosniff`` on
   every answer; ``Cache-Control: no-store`` on answers under ``/api/`` that did not
   choose their own caching (they carry people's tasks; JSON answers set both
   themselves, ``api.common.JSON``, so this covers redirects, plain-text answers, the
   favicon);
6. one access line when the request is done.

Between 4 and 5 the request goes to the app: the producer's hottest calls straight to
their endpoints (``server.shortcuts``, the same answers without the router's layers),
everything else through Starlette's exception layer and router.

A WebSocket handshake meets the origin allow-list (403) and nothing else, and ``/ws``
then goes straight to its endpoint: routing and Starlette's exception middleware would
otherwise keep a stack of frames alive for every socket's whole life (about 5 KB each);
the endpoint handles every error it expects itself. No frame of the gate stays on a
socket's stack either: for a socket ``__call__`` returns the endpoint's own coroutine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from server import logs, metrics, origins
from server.api.common import CHECKED
from server.errors import PayloadTooLarge, RequestTimeout, TooManyRequests
from server.fields import whole_number
from server.guard import BodyWatch, Deadlines, send_error, tick_for
from server.limits import LIMITED_PREFIXES, Edge, credential_from, retry_after
from server.settings import Settings
from server.shortcuts import Shortcuts

SocketEndpoint = Callable[[WebSocket], Awaitable[None]]


class Gate:
    """The edge checks of ``settings`` in front of ``app`` (see the module docstring);
    ``edge`` holds the rate counts, ``sockets`` the WebSocket endpoints by path that
    skip routing, ``shortcuts`` the HTTP routes that do."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        edge: Edge,
        sockets: dict[str, SocketEndpoint],
        shortcuts: Shortcuts | None = None,
    ) -> None:
        self.app = app
        self.allowed = settings.allowed_origins
        self.limit = settings.max_body_bytes
        self.timeout_s = settings.body_timeout_s
        self.access = settings.access_log
        self.edge = edge
        self.sockets = sockets
        self.shortcuts = shortcuts if shortcuts is not None else Shortcuts((), {})
        self.deadlines = Deadlines(tick_for(settings.body_timeout_s))

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        kind = scope["type"]
        if kind == "http":
            return self._http(scope, receive, send)
        if kind == "websocket":
            if self.allowed and origins.refused(scope, self.allowed):
                return origins.refuse(scope, send)
            endpoint = self.sockets.get(scope["path"])
            if endpoint is not None:
                return endpoint(WebSocket(scope, receive, send))
        return self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One pass over the request's headers for everything the gate reads.
        given = authorization = None
        declared_too_big = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value if given is None else given
            elif name == b"authorization":
                authorization = value if authorization is None else authorization
            elif name == b"content-length":
                declared_too_big |= whole_number(value, self.limit) is None
        rid = logs.sane_request_id(given.decode("latin-1") if given is not None else None)
        rid_header = rid.encode()
        context = logs.request_id.set(rid)
        tenant_context = logs.tenant.set(None)  # the endpoint names it once it knows
        began = time.perf_counter()
        path: str = scope["path"]
        api = path.startswith("/api/")
        status = 500
        started = False

        async def answer(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers: list[tuple[bytes, bytes]] = []
                nosniff = cached = False
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":
                        continue  # ours replaces the app's
                    headers.append((name, value))
                    lower = name.lower()
                    nosniff = nosniff or lower == b"x-content-type-options"
                    cached = cached or lower == b"cache-control"
                if not nosniff:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if api and not cached:
                    headers.append((b"cache-control", b"no-store"))
                headers.append((b"x-request-id", rid_header))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if self.allowed and origins.refused(scope, self.allowed):
                await origins.refuse(scope, answer)
                return
            if self.edge.limits_requests and path.startswith(LIMITED_PREFIXES):
                caller = self.edge.caller(
                    credential_from(authorization, path, scope.get("query_string"))
                )
                if caller is not None:
                    scope[CHECKED] = caller
                    wait = self.edge.wait(caller)
                    if wait > 0:
                        exc = TooManyRequests("too many requests; slow down")
                        metrics.of(scope["app"]).rate_limited.inc()
                        exc.headers["Retry-After"] = str(retry_after(wait))
                        await send_error(answer, exc)
                        return
            if declared_too_big:
                await send_error(answer, PayloadTooLarge(f"the body is over {self.limit} bytes"))
                return
            try:
                hit = self.shortcuts.match(scope)
                if hit is not None:
                    await self.shortcuts.run(hit, scope, self._body(receive), answer)
                else:
                    await self.app(scope, self._body(receive), answer)
            except (RequestTimeout, PayloadTooLarge) as exc:
                if not started:
                    await send_error(answer, exc)
        finally:
            if self.access:
                duration_ms = round((time.perf_counter() - began) * 1000, 1)
                logs.access(scope["method"], path, status, duration_ms)
            logs.request_id.reset(context)
            logs.tenant.reset(tenant_context)

    def _body(self, receive: Receive) -> Receive:
        """``receive`` for the app: the body within the size limit and on time."""
        limit, timeout_s, deadlines = self.limit, self.timeout_s, self.deadlines
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        complete = False
        seen = 0

        async def guarded() -> Message:
            nonlocal complete, seen
            if complete:  # the body is in: what follows is the wait for a disconnect
                return await receive()
            if timeout_s:
                if loop.time() >= deadline:
                    raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s")
                task = asyncio.current_task()
                assert task is not None
                watch = BodyWatch(task)
                deadlines.watch(watch, deadline, watch.expire, loop)
                try:
                    message = await receive()
                except asyncio.CancelledError:
                    if watch.timed_out():
                        raise RequestTimeout(
                            f"the request body did not arrive within {timeout_s:g} s"
                        ) from None
                    raise
                finally:
                    deadlines.forget(watch)
            else:
                message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"the body is over {limit} bytes")
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        return guarded
