"""Slow-client protection: request headers and bodies must arrive in time.

A client that drips its request (one byte a second) would otherwise hold a connection,
a parser and, for bodies, a request task for as long as it likes.

- Headers: ``HeaderTimeoutProtocol`` is uvicorn's httptools protocol with a deadline
  set when a connection is made and when each request on it begins, dropped once that
  request's headers are complete. When it passes the server answers 408
  ``request_timeout`` (JSON) if no response is in progress, and closes the connection.
  A WebSocket upgrade drops it with the handshake's headers: an open socket is never
  cut by it. ``http_protocol(settings)`` makes the class for ``uvicorn.Config(http=...)``.
- Bodies: the ASGI gate (``server.gate``, with ``BodyWatch`` from here) gives the
  whole body ``TASKBELL_BODY_TIMEOUT_SECONDS`` from the moment the app gets the
  request; a ``receive`` still waiting then raises ``RequestTimeout``, answered 408
  ``request_timeout`` with ``Connection: close``; it also answers 413 for a body over
  the size limit, declared or streamed. As a backstop for a body nobody reads, the
  protocol also closes a connection whose request body is not complete a little after
  that.

Deadlines are not timers of their own: a request would arm and cancel two or three
timer handles. ``Deadlines`` keeps them in a dict that one timer sweeps every tenth of
the shortest timeout (at most a second, at least 50 ms) while anything is watched, so a
deadline is enforced up to that tick late (10 s: between 10 and 11 s).

``TASKBELL_HEADER_TIMEOUT_SECONDS`` / ``TASKBELL_BODY_TIMEOUT_SECONDS`` (10 s each; 0
turns one off).
"""

from __future__ import annotations

import asyncio
from asyncio import TimerHandle
from collections.abc import Callable, Hashable
from typing import Any

import orjson
from starlette.types import Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from server.errors import ApiError

# How much longer than the body timeout the protocol's backstop waits, so that the ASGI
# guard answers 408 first whenever the app is reading the body (more than a tick).
BACKSTOP_GRACE_S = 2.0


def tick_for(*timeouts_s: float) -> float:
    """How often ``Deadlines`` looks: a tenth of the shortest timeout in use, between
    50 ms and 1 s."""
    used = [t for t in timeouts_s if t > 0]
    return min(1.0, max(0.05, min(used, default=10.0) / 10))


class Deadlines:
    """Things that must be done by a time: ``watch(key, at, expire)`` calls ``expire()``
    once the loop's clock has passed ``at``, unless ``forget(key)`` (or another
    ``watch`` of the same key) came first. One timer looks every ``tick_s`` while
    anything is watched and none runs otherwise, so a deadline fires up to ``tick_s``
    late; watching costs a dict entry, not a timer handle."""

    def __init__(self, tick_s: float) -> None:
        self.tick_s = tick_s
        self._due: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._timer: TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._due)

    def watch(
        self, key: Hashable, at: float, expire: Callable[[], None], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._due[key] = (at, expire)
        if self._timer is None:
            self._timer = loop.call_later(self.tick_s, self._sweep, loop)

    def forget(self, key: Hashable) -> None:
        self._due.pop(key, None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = [key for key, (at, _) in self._due.items() if at <= now]
        for key in late:
            _, expire = self._due.pop(key)
            expire()
        self._timer = loop.call_later(self.tick_s, self._sweep, loop) if self._due else None


class BodyWatch:
    """One wait for a piece of a request body, under the request's deadline: ``expire``
    (called by ``Deadlines``) cancels the waiting task, and ``timed_out()`` tells that
    cancellation from any other (as ``asyncio.timeout`` does, with ``Task.uncancel``)."""

    __slots__ = ("cancelling", "fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.fired = False

    def expire(self) -> None:
        self.fired = True
        self.task.cancel()

    def timed_out(self) -> bool:
        """After a ``CancelledError``: True when it was this watch's own."""
        return self.fired and self.task.uncancel() <= self.cancelling


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
    """uvicorn's httptools protocol with deadlines for a request's headers and body.

    A connection has at most one deadline at a time in its class's ``deadlines``: for
    the headers from the moment it is made or a request on it begins, then for the body
    from the end of the headers until the request is complete."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    deadlines: Deadlines = Deadlines(1.0)

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._awaiting_headers = False

    # A connection that never completes a request's headers is cut, including one
    # that sends nothing at all.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_headers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._awaiting_headers:  # the first request keeps the connection's deadline
            self._watch_headers()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self.deadlines.forget(self)
        super().on_headers_complete()
        cycle = self.cycle
        started = cycle is not None and cycle.scope is self.scope and not self.pipeline
        if started and self.body_timeout_s > 0:  # not an upgrade, not queued behind another
            at = self.loop.time() + self.body_timeout_s + BACKSTOP_GRACE_S
            self.deadlines.watch(self, at, self._body_too_slow, self.loop)

    def on_message_complete(self) -> None:
        self.deadlines.forget(self)
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._awaiting_headers = False
        self.deadlines.forget(self)
        super().connection_lost(exc)

    # ---------------------------------------------------------------- deadlines

    def _watch_headers(self) -> None:
        if self.header_timeout_s > 0:
            self._awaiting_headers = True
            at = self.loop.time() + self.header_timeout_s
            self.deadlines.watch(self, at, self._headers_too_slow, self.loop)

    def _headers_too_slow(self) -> None:
        self._awaiting_headers = False
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(_timeout_response(self.server_state, "headers"))
        self.transport.close()

    def _body_too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout_s: float, body_timeout_s: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these deadlines."""

    class TaskbellHttpProtocol(HeaderTimeoutProtocol):
        pass

    TaskbellHttpProtocol.header_timeout_s = header_timeout_s
    TaskbellHttpProtocol.body_timeout_s = body_timeout_s
    TaskbellHttpProtocol.deadlines = Deadlines(tick_for(header_timeout_s, body_timeout_s))
    return TaskbellHttpProtocol
