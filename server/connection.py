"""One subscriber's socket as the hub sees it: a bounded queue of encoded messages, a
writer task that exists only while the socket makes a send wait, and where each feed
it follows stands for it.

``Sender`` is the socket side (``server.wsserver.LeanSocket`` under ``python -m
server``, a Starlette WebSocket on the ASGI endpoint, or the event stream's buffer).
Sending never blocks the hub: a connection whose queue overflows is closed with 4008
(too slow) and resumes with ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Coroutine, Generator
from enum import Enum
from typing import Any, Protocol

from server.errors import CloseCode
from server.feeds import user_key

CLOSE_WAIT_S = 30.0  # how long a close frame may wait for a stalled socket


class Sender(Protocol):
    """The socket side of a connection (``LeanSocket`` and a Starlette WebSocket
    satisfy it). A ``send_text`` that can go at once must not suspend: ``_kick`` runs
    it inline and only makes a task for one that waits."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class ConnState(Enum):
    JOINING = "joining"
    OPEN = "open"
    CLOSING = "closing"


class Position:
    """Where one followed feed stands for one connection: the seq it was last given and
    the counts that went with it. The hub's feed state holds the same object, so fanning
    out reads it without a lookup."""

    __slots__ = ("count", "feed", "postponed", "seq")

    def __init__(self, feed: str, seq: int, count: int, postponed: int = 0) -> None:
        self.feed = feed  # the wire name (``user:…`` / ``role:…``)
        self.seq = seq
        self.count = count
        self.postponed = postponed


class _Started:
    """An awaitable for a coroutine already run up to its first suspension (``first``:
    what it yielded there): awaiting it in a task carries on exactly where it stopped,
    as ``await coroutine`` would have from the start."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, None]:
        value = self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # (cancellation included: into the coroutine)
                try:
                    value = self.coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = self.coro.send(sent)
                except StopIteration:
                    return


class Connection:
    """One authenticated socket of ``user`` in ``tenant``: a bounded queue of encoded
    messages, a writer task that exists only while the socket makes a send wait (an
    idle socket holds no task), and ``feeds``: key → ``Position`` of every feed it follows
    (filled by the hub as it joins)."""

    __slots__ = (
        "_closer",
        "_queue",
        "_writer",
        "close_code",
        "feeds",
        "key",
        "limit",
        "sender",
        "state",
        "tenant",
        "user",
    )

    def __init__(self, sender: Sender, tenant: str, user: str, limit: int) -> None:
        self.sender = sender
        self.tenant = tenant
        self.user = user
        self.key = user_key(tenant, user)  # the own feed's key
        self.limit = limit
        self.feeds: dict[str, Position] = {}
        self.state = ConnState.JOINING
        self.close_code: int | None = None
        self._queue: deque[str] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    @property
    def seq(self) -> int:
        """The own feed's seq as this connection was given it."""
        pos = self.feeds.get(self.key)
        return pos.seq if pos is not None else 0

    @property
    def count(self) -> int:
        pos = self.feeds.get(self.key)
        return pos.count if pos is not None else 0

    def push(self, key: str, seq: int, count: int, message: str, postponed: int = 0) -> None:
        """Queue one event of the followed feed ``key``; never blocks. Overflow closes
        the connection with 4008."""
        self.deliver(self.feeds[key], seq, count, message, postponed)

    def deliver(
        self, pos: Position, seq: int, count: int, message: str, postponed: int = 0
    ) -> None:
        """``push`` for a caller that holds the feed's ``Position`` already (fan-out)."""
        if self.state is ConnState.CLOSING:
            return
        if len(self._queue) >= self.limit:
            self.close(CloseCode.TOO_SLOW, "too slow: reconnect with since")
            return
        self._queue.append(message)
        pos.seq = seq
        pos.count = count
        pos.postponed = postponed
        self._kick()

    def push_raw(self, message: str) -> None:
        """Queue a message outside the seq flow (snapshot, replay, feed.joined/left);
        no limit applies."""
        if self.state is ConnState.CLOSING:
            return
        self._queue.append(message)
        self._kick()

    def reply(self, message: str) -> None:
        """Queue an answer (pong); a client flooding while not reading is closed 4008."""
        if self.state is ConnState.CLOSING:
            return
        if len(self._queue) >= self.limit:
            self.close(CloseCode.TOO_SLOW, "too slow: reconnect with since")
            return
        self.push_raw(message)

    def beat(self, message: str) -> None:
        """Queue a heartbeat ping, unless the queue is at its limit: a socket still
        taking a long replay (pushed outside the limit) is pinged next round, not
        closed as too slow for a message of the server's own."""
        if len(self._queue) < self.limit:
            self.push_raw(message)

    def start(self) -> None:
        self.state = ConnState.OPEN
        self._kick()

    def _kick(self) -> None:
        """Send what is queued now, in this call, while the socket takes it without
        waiting (a writable socket's send never suspends); the first send that would
        wait goes on in a writer task, with the rest of the queue behind it. Most
        deliveries so need no task at all (one per delivery was a good part of its cost
        in the profiles), and an idle socket holds none."""
        if self.state is not ConnState.OPEN:
            return
        if self._writer is not None:
            if not self._writer.done():
                return  # the writer sends it, in order
            self._writer = None
        queue = self._queue
        while queue:
            sending = self.sender.send_text(queue.popleft())
            try:
                waiting = sending.send(None)
            except StopIteration:
                continue
            except Exception:
                self._lost()
                return
            self._writer = asyncio.create_task(self._drain(_Started(sending, waiting)))
            return

    async def _drain(self, first: Awaitable[None]) -> None:
        queue = self._queue
        try:
            await first
            while queue:
                await self.sender.send_text(queue.popleft())
        except Exception:
            self._lost()

    def gone(self) -> None:
        """The socket is gone, or closing on its own: nothing more is sent (a close
        in progress goes on)."""
        if self._writer is not None:
            self._writer.cancel()
        self._lost()

    def _lost(self) -> None:
        # The peer is gone: the reader sees the disconnect and cleans up.
        self.state = ConnState.CLOSING
        self._queue.clear()

    def close(self, code: int, reason: str) -> None:
        """Start closing with ``code``; idempotent. Queued messages are dropped."""
        if self.state is ConnState.CLOSING:
            return
        self.state = ConnState.CLOSING
        self.close_code = code
        self._queue.clear()
        if self._writer is not None:
            self._writer.cancel()
        self._closer = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        # The close frame waits behind whatever the socket still holds: a client that
        # stopped reading sees it when it reads again. One that never does is dropped by
        # the server's keepalive pings (the transport is closed on a ping timeout).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sender.close(code, reason), CLOSE_WAIT_S)

    async def wait_closed(self) -> None:
        """Await the writer and closer (the owner of both tasks is this connection)."""
        for task in (self._writer, self._closer):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
