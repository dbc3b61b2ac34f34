"""``GET /events`` (also ``/api/v1/events``): the owner's feed as Server-Sent Events, for
subscribers that cannot speak WebSocket.

The same messages as ``/ws``, through the same hub, each as one SSE event::

    id: 42                      (the message's seq; snapshot and synced carry theirs)
    event: task.added           (the message's type)
    data: {"type": "task.added", "seq": 42, "count": 3, "task": {...}}

- Resume: ``Last-Event-ID`` (what ``EventSource`` sends by itself on reconnecting) or
  ``?since=`` gives exactly what ``/ws`` gives for ``since``: the missed events then
  ``synced``, or a fresh ``snapshot`` when they are no longer kept.
- Heartbeat: a comment line (``: keep-alive``) every ``TASKBELL_SSE_HEARTBEAT_SECONDS``
  (15 s), so proxies keep the stream open and dead peers are noticed.
- End: where ``/ws`` would close with a code (4008 too slow, 1012 restart, 4001 token
  expired), the stream sends ``event: close`` with ``{"code", "reason"}`` and ends;
  ``EventSource`` reconnects with ``Last-Event-ID``.
- Auth: ``Authorization: Bearer <user token>``, like the HTTP API. Browsers'
  ``EventSource`` cannot set headers, so ``?token=`` is accepted too. That is acceptable
  here because the token is the same short-lived (hours) bearer the panel already holds,
  the request goes to the same origin over the same TLS, and Taskbell never logs request
  URLs (uvicorn's access log is off); a deployment whose proxies log query strings
  should have clients send the header.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import orjson
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from server import limits
from server.api.common import parts
from server.auth import User, bearer
from server.connection import Connection
from server.errors import BadRequest, CloseCode, Unauthorized
from server.wire import dumps

SEQ_MAX = 2**63 - 1


def frame(message: str) -> str:
    """One SSE event for one hub message (a JSON object with a ``type``)."""
    data = orjson.loads(message)
    lines = []
    seq = data.get("seq") if isinstance(data, dict) else None
    if isinstance(seq, int):
        lines.append(f"id: {seq}")
    kind = data.get("type") if isinstance(data, dict) else None
    if isinstance(kind, str):
        lines.append(f"event: {kind}")
    lines.append(f"data: {message}")
    return "\n".join(lines) + "\n\n"


def close_frame(code: int, reason: str) -> str:
    return f"event: close\ndata: {dumps({'code': code, 'reason': reason})}\n\n"


class SseSender:
    """The hub's ``Sender`` for one stream: frames wait in a bounded buffer until the
    response writes them; a full buffer makes the hub's connection queue grow, which
    ends in 4008 (too slow) exactly as for a WebSocket."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self.closed: tuple[int, str] | None = None
        self._frames: deque[str] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()

    async def send_text(self, data: str) -> None:
        while len(self._frames) >= self.limit and self.closed is None:
            self._room.clear()
            await self._room.wait()
        self._frames.append(frame(data))
        self._ready.set()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.closed is None:
            self.closed = (code, reason or "")
            self._ready.set()

    async def next(self, heartbeat_s: float) -> str | None:
        """The next frame; ``""`` when ``heartbeat_s`` passed with none (send a heartbeat);
        None once closed and drained."""
        while not self._frames:
            if self.closed is not None:
                return None
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), heartbeat_s)
            except TimeoutError:
                return ""
        item = self._frames.popleft()
        self._room.set()
        return item


def _user(request: Request) -> User:
    p = parts(request)
    header = request.headers.get("authorization")
    if header is not None:
        return p.authenticate(bearer(header))
    query = request.query_params.get("token")
    if query:
        return p.authenticate(query)
    raise Unauthorized(
        "missing Authorization: Bearer header (or ?token= for EventSource)",
        code="missing_credentials",
    )


def _since(request: Request) -> int | None:
    raw = request.headers.get("last-event-id")
    name = "Last-Event-ID"
    if raw is None or raw.strip() == "":
        raw, name = request.query_params.get("since"), "since"
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not raw.isdigit() or int(raw) > SEQ_MAX:
        raise BadRequest(f"{name} must be a whole number (a seq)", code="bad_since")
    return int(raw)


class EventStream:
    """The ASGI endpoint (a class, so Starlette hands it the raw scope: the stream must
    watch for the client leaving while it waits for events)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        p = parts(request)
        who = _user(request)
        limits.stream_admit(request, who)  # 429 over the per-user cap of sockets
        since = _since(request)
        sender = SseSender()
        gone = asyncio.Event()
        async with p.hub.session(sender, who, since) as session:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            watcher = asyncio.create_task(self._watch(receive, session.conn, gone))
            try:
                await self._pump(send, sender, p.settings.sse_heartbeat_s, gone)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _pump(
        self, send: Send, sender: SseSender, heartbeat: float, gone: asyncio.Event
    ) -> None:
        async def write(text: str, more: bool = True) -> None:
            await send({"type": "http.response.body", "body": text.encode(), "more_body": more})

        try:
            await write("retry: 2000\n\n")
            while True:
                item = await sender.next(heartbeat)
                if item is None:
                    break
                await write(item or ": keep-alive\n\n")
            if not gone.is_set() and sender.closed is not None:
                await write(close_frame(*sender.closed), more=False)
        except OSError:
            pass  # the client went away while we wrote

    async def _watch(self, receive: Receive, conn: Connection, gone: asyncio.Event) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
                conn.close(CloseCode.GOING_AWAY, "client went away")
                return


stream = EventStream()

routes = [
    Route("/events", stream, methods=["GET"]),
    Route("/api/v1/events", stream, methods=["GET"]),
]
