"""Slow-client protection: request headers and bodies must arrive in time.

A client that drips its request (one byte a second) would otherwise hold a connection,
a parser and, for bodies, a request task for as long as it likes.

- Headers: ``HeaderTimeoutProtocol`` is uvicorn's httptools protocol with a timer armed
  when a connection is made and when each request on it begins, cancelled once that
  request's headers are complete. When it fires the server answers 408
  ``request_timeout`` (JSON) if no response is in progress, and closes the connection.
  A WebSocket upgrade cancels it with the handshake's headers: an open socket is never
  cut by it. ``http_protocol(settings)`` makes the class for ``uvicorn.Config(http=...)``.
- Bodies: ``BodyGuard`` (ASGI) gives the whole body ``TASKBELL_BODY_TIMEOUT_SECONDS``
  from the moment the app gets the request; a ``receive`` still waiting then raises
  ``RequestTimeout``, answered 408 ``request_timeout`` with ``Connection: close``; it
  also answers 413 for a body over the size limit, declared or streamed. As a
  backstop for a body nobody reads, the protocol also closes a connection whose request
  body is not complete a little after that.

``TASKBELL_HEADER_TIMEOUT_SECONDS`` / ``TASKBELL_BODY_TIMEOUT_SECONDS`` (10 s each; 0
turns one off).
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from server.errors import ApiError, PayloadTooLarge, RequestTimeout

# How much longer than the body timeout the protocol's backstop waits, so that the ASGI
# guard answers 408 first whenever the app is reading the body.
BACKSTOP_GRACE_S = 2.0


async def send_error(send: Send, exc: ApiError) -> None:
    """Answer ``exc`` as the usual JSON error, before any response has started."""
    body = orjson.dumps(exc.body())
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Request bodies arrive whole, in time, and within the size limit: 413
    ``payload_too_large`` for a body declared or streamed over ``limit`` bytes, 408
    ``request_timeout`` for one not fully in within ``timeout_s`` (0: no deadline),
    each as the usual JSON error when no answer has started."""

    def __init__(self, app: ASGIApp, limit: int, timeout_s: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await send_error(send, PayloadTooLarge(f"the body is over {self.limit} bytes"))
                return
        deadline = asyncio.get_running_loop().time() + self.timeout_s if self.timeout_s else None
        complete = False
        started = False
        seen = 0

        async def guarded_receive() -> Message:
            nonlocal complete, seen
            if complete:  # the body is in: what follows is the wait for a disconnect
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"the request body did not arrive within {self.timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLarge(f"the body is over {self.limit} bytes")
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except (RequestTimeout, PayloadTooLarge) as exc:
            if not started:
                await send_error(send, exc)


def _timeout_response(server_state: ServerState, what: str) -> bytes:
    body = orjson.dumps(
        {"error": {"code": "request_timeout", "message": f"the request {what} took too long"}}
    )
    lines = [STATUS_LINE[408]]
    for name, value in server_state.default_headers:
        lines += [name, b": ", value, b"\r\n"]
    lines += [
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ]
    return b"".join(lines)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines for a request's headers and body."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._header_timer: TimerHandle | None = None
        self._body_timer: TimerHandle | None = None

    # A connection that never completes a request's headers is cut, including one
    # that sends nothing at all.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:  # the first request keeps the connection's deadline
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()
        cycle = self.cycle
        started = cycle is not None and cycle.scope is self.scope and not self.pipeline
        if started and self.body_timeout_s > 0:  # not an upgrade, not queued behind another
            self._cancel_body_timer()
            self._body_timer = self.loop.call_later(
                self.body_timeout_s + BACKSTOP_GRACE_S, self._body_too_slow
            )

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    # ---------------------------------------------------------------- timers

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        if self.header_timeout_s > 0:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_timeout_response(self.server_state, "headers"))
        self.transport.close()

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout_s: float, body_timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these deadlines."""

    class TaskbellHttpProtocol(HeaderTimeoutProtocol):
        pass

    TaskbellHttpProtocol.header_timeout_s = header_timeout_s
    TaskbellHttpProtocol.body_timeout_s = body_timeout_s
    return TaskbellHttpProtocol
