"""``GET /events`` (also ``/api/v1/events``): the feeds a person follows as Server-Sent
Events, for subscribers that cannot speak WebSocket.

The same messages as ``/ws``, through the same hub, each as one SSE event::

    id: 42                      (where the stream's feeds stand: see below)
    event: task.added           (the message's type)
    data: {"type": "task.added", "feed": "user:alice", "seq": 42, "count": 3,
           "counts": {"running": 3, "postponed": 1}, ...}

- The id of every message that moves a feed (events, snapshot, synced, feed.joined,
  feed.left) is where every followed feed stands after it: the own feed's seq, then
  ``,<feed>=<seq>`` for each other feed (``42,role:approvers=7``); a stream following
  only its own feed has ids as before (``42``).
- Resume: ``Last-Event-ID`` (what ``EventSource`` sends by itself on reconnecting; that
  form) or ``?since=`` and ``?since_feeds=`` (a JSON object, as in the auth message)
  give exactly what ``/ws`` gives for ``since`` and ``since_feeds``: the missed events
  then ``synced``, or a fresh ``snapshot`` when they are no longer kept.
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
from server.fields import whole_number
from server.wire import SEQ_MAX, dumps, parse_since_feeds

_MOVES = frozenset({"snapshot", "synced", "feed.joined", "feed.left"})


class Positions:
    """Where a stream's feeds stand, from the messages it was sent (pure): the SSE id.
    ``own`` is the own feed's wire name; events without a ``feed`` are the own feed's."""

    def __init__(self, own: str) -> None:
        self.own = own
        self.seqs: dict[str, int] = {}

    def see(self, data: object) -> str | None:
        """Take one message in; the id to send with it, or None (it moves no feed)."""
        if not isinstance(data, dict):
            return None
        kind = data.get("type")
        if kind in ("snapshot", "synced"):
            feeds = data.get("feeds")
            if isinstance(feeds, dict):
                self.seqs = {f: p["seq"] for f, p in feeds.items() if isinstance(p, dict)}
            else:
                self.seqs = {self.own: data.get("seq", 0)}
        elif kind == "feed.left":
            self.seqs.pop(str(data.get("feed")), None)
        elif kind in _MOVES or (isinstance(kind, str) and kind.startswith("task.")):
            seq = data.get("seq")
            if not isinstance(seq, int):
                return None
            self.seqs[str(data.get("feed", self.own))] = seq
        else:
            return None
        own = self.seqs.get(self.own, 0)
        others = "".join(f",{f}={s}" for f, s in self.seqs.items() if f != self.own)
        return f"{own}{others}"


def frame(message: str, positions: Positions | None = None) -> str:
    """One SSE event for one hub message (a JSON object with a ``type``)."""
    data = orjson.loads(message)
    lines = []
    if positions is not None:
        event_id = positions.see(data)
        if event_id is not None:
            lines.append(f"id: {event_id}")
    else:
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

    def __init__(self, limit: int = 64, own: str | None = None) -> None:
        self.limit = limit
        self.positions = Positions(own) if own is not None else None
        self.closed: tuple[int, str] | None = None
        self._frames: deque[str] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()

    async def send_text(self, data: str) -> None:
        while len(self._frames) >= self.limit and self.closed is None:
            self._room.clear()
            await self._room.wait()
        self._frames.append(frame(data, self.positions))
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


def _seq(raw: str, name: str) -> int:
    value = whole_number(raw.strip(), SEQ_MAX)
    if value is None:
        raise BadRequest(f"{name} must be a whole number (a seq)", code="bad_since")
    return value


def _feeds(value: object, name: str) -> dict[str, int]:
    try:
        return parse_since_feeds(value)
    except ValueError:
        raise BadRequest(
            f"{name} must name at most 100 feeds (user:<id> or role:<id>), each with a seq",
            code="bad_since",
        ) from None


def _since(request: Request) -> tuple[int | None, dict[str, int]]:
    """``since`` and ``since_feeds`` from ``Last-Event-ID`` (``42,role:r=7``), else
    from the query (``?since=42&since_feeds={"role:r":7}``)."""
    raw = request.headers.get("last-event-id")
    if raw is not None and raw.strip() != "":
        own, *rest = raw.split(",")
        pairs: dict[str, object] = {}
        for item in rest:
            feed, sep, seq = item.strip().partition("=")
            if not sep or feed in pairs:
                raise BadRequest("Last-Event-ID must be seq[,feed=seq...]", code="bad_since")
            pairs[feed] = _seq(seq, "Last-Event-ID")
        return _seq(own, "Last-Event-ID"), _feeds(pairs, "Last-Event-ID")
    since = request.query_params.get("since")
    feeds = request.query_params.get("since_feeds")
    others: dict[str, int] = {}
    if feeds:
        try:
            parsed = orjson.loads(feeds)
        except orjson.JSONDecodeError:
            raise BadRequest("since_feeds must be a JSON object", code="bad_since") from None
        others = _feeds(parsed, "since_feeds")
    return (_seq(since, "since") if since else None), others


class EventStream:
    """The ASGI endpoint (a class, so Starlette hands it the raw scope: the stream must
    watch for the client leaving while it waits for events)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        p = parts(request)
        who = _user(request)
        limits.stream_admit(request, who)  # 429 over the per-user cap of sockets
        since, since_feeds = _since(request)
        sender = SseSender(own=who.feed)
        gone = asyncio.Event()
        async with p.hub.session(sender, who, since, since_feeds) as session:
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
