"""The hub: this process's WebSocket connections, grouped by owner, kept in seq order.

Guarantees, per owner, for every local connection: each event is pushed once, in seq
order, with no gaps. How:

- ``OwnerState.delivered`` is the last seq fanned out to this owner's connections; each
  ``Connection`` also remembers the last seq it was given (a new connection starts at
  its snapshot's seq and skips what that already contains).
- ``on_envelope`` (called by the broker, never blocking): ``seq <= delivered`` is a
  duplicate and dropped; ``delivered + 1`` is fanned out at once; anything higher means
  something was missed, so a catch-up task reads the gap from ``feed_event``.
- ``resync`` (after a broker reconnect, and every ``sweep_interval``) compares each
  owner's ``delivered`` with the database and catches up the ones behind.
- Sending never blocks the hub: each connection has a bounded queue and its own writer;
  a connection whose queue overflows is closed with 4008 and resumes with ``since``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from server.changes import Envelope
from server.errors import CloseCode
from server.store import Snapshot, Store
from server.wire import SnapshotMessage, SyncedMessage, dumps

log = logging.getLogger("taskbell.hub")

RECENT = 16  # events kept per owner to bring a just-joined connection up to date
CLOSE_WAIT_S = 30.0  # how long a close frame may wait for a stalled socket


class Sender(Protocol):
    """The socket side of a connection (a Starlette WebSocket satisfies it)."""

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class ConnState(Enum):
    JOINING = "joining"
    OPEN = "open"
    CLOSING = "closing"


class Connection:
    """One authenticated socket: a bounded queue of encoded messages, and a writer task
    that exists only while there is something to send (an idle socket holds no task)."""

    __slots__ = (
        "_closer",
        "_queue",
        "_writer",
        "close_code",
        "limit",
        "owner",
        "sender",
        "seq",
        "state",
    )

    def __init__(self, sender: Sender, owner: str, limit: int) -> None:
        self.sender = sender
        self.owner = owner
        self.limit = limit
        self.seq = 0
        self.state = ConnState.JOINING
        self.close_code: int | None = None
        self._queue: deque[str] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def push(self, seq: int, message: str) -> None:
        """Queue one event; never blocks. Overflow closes the connection with 4008."""
        if self.state is ConnState.CLOSING:
            return
        if len(self._queue) >= self.limit:
            self.close(CloseCode.TOO_SLOW, "too slow: reconnect with since")
            return
        self._queue.append(message)
        self.seq = seq
        self._kick()

    def push_raw(self, message: str) -> None:
        """Queue a message outside the seq flow (snapshot, replay); no limit applies."""
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

    def start(self) -> None:
        self.state = ConnState.OPEN
        self._kick()

    def _kick(self) -> None:
        if self.state is ConnState.OPEN and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        queue = self._queue
        try:
            while queue:
                await self.sender.send_text(queue.popleft())
        except Exception:  # the peer is gone: the reader sees the disconnect and cleans up
            self.state = ConnState.CLOSING
            queue.clear()

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
        # the server's keepalive pings (uvicorn closes the transport on a ping timeout).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sender.close(code, reason), CLOSE_WAIT_S)

    async def wait_closed(self) -> None:
        """Await the writer and closer (the owner of both tasks is this connection)."""
        for task in (self._writer, self._closer):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


@dataclass(eq=False)
class OwnerState:
    conns: set[Connection] = field(default_factory=set)
    delivered: int | None = None
    seen_max: int = 0
    joining: int = 0
    recent: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=RECENT))
    catch_up: asyncio.Task[None] | None = None
    again: bool = False


class Hub:
    def __init__(self, store: Store, *, sweep_interval: float = 5.0) -> None:
        self.store = store
        self.owners: dict[str, OwnerState] = {}
        self.sweep_interval = sweep_interval
        self._sweeper: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="hub-sweeper")

    async def stop(self) -> None:
        """Stop the sweeper and catch-ups. They are let finish their current query (a
        task cancelled inside a database call can leave its connection unreturned), and
        cancelled only if that takes longer than a few seconds."""
        self._stopping.set()
        tasks = [t for t in (self._sweeper, self._resync_task) if t is not None]
        tasks += [st.catch_up for st in self.owners.values() if st.catch_up is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=5.0)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def connections(self) -> list[Connection]:
        return [c for st in self.owners.values() for c in st.conns]

    @property
    def connection_count(self) -> int:
        return sum(len(st.conns) for st in self.owners.values())

    # ---------------------------------------------------------------- joining and leaving

    async def join(self, conn: Connection, since: int | None) -> None:
        """Send the snapshot (or the replay after ``since``) and start live delivery."""
        st = self.owners.get(conn.owner)
        if st is None:
            st = self.owners[conn.owner] = OwnerState()
        st.joining += 1
        try:
            while True:
                view = await self.store.resume(conn.owner, since)
                if st.delivered is None or view.seq >= st.delivered:
                    break
                missing = st.delivered - view.seq
                if st.recent and st.recent[0][0] <= view.seq + 1 and len(st.recent) >= missing:
                    break
                # Too much happened during our read to patch from `recent`: read again.
        finally:
            st.joining -= 1
        if conn.state is ConnState.CLOSING:
            self._forget_if_idle(conn.owner, st)
            return
        if isinstance(view, Snapshot):
            snap: SnapshotMessage = {
                "type": "snapshot",
                "seq": view.seq,
                "count": view.count,
                "tasks": view.tasks,
            }
            conn.push_raw(dumps(snap))
        else:
            for message in view.messages:
                conn.push_raw(message)
            synced: SyncedMessage = {"type": "synced", "seq": view.seq, "count": view.count}
            conn.push_raw(dumps(synced))
        conn.seq = view.seq
        if st.delivered is None:
            st.delivered = view.seq
        else:
            for seq, message in st.recent:
                if seq > conn.seq:
                    conn.push(seq, message)
        st.conns.add(conn)
        conn.start()
        if max(st.seen_max, view.seq) > st.delivered:
            self._schedule_catch_up(conn.owner, st)

    def leave(self, conn: Connection) -> None:
        st = self.owners.get(conn.owner)
        if st is not None:
            st.conns.discard(conn)
            self._forget_if_idle(conn.owner, st)

    def _forget_if_idle(self, owner: str, st: OwnerState) -> None:
        if not st.conns and st.joining == 0 and self.owners.get(owner) is st:
            del self.owners[owner]
            if st.catch_up is not None:
                st.catch_up.cancel()

    # ---------------------------------------------------------------- delivery

    def on_envelope(self, env: Envelope) -> None:
        """Broker callback: deliver, drop a duplicate, or schedule gap filling."""
        st = self.owners.get(env.owner)
        if st is None:
            return
        if st.delivered is None:
            st.seen_max = max(st.seen_max, env.seq)
            return
        if env.seq <= st.delivered:
            return
        if env.seq == st.delivered + 1:
            self._fan_out(st, env.seq, env.message)
        else:
            st.seen_max = max(st.seen_max, env.seq)
            self._schedule_catch_up(env.owner, st)

    def _fan_out(self, st: OwnerState, seq: int, message: str) -> None:
        st.delivered = seq
        st.recent.append((seq, message))
        for conn in st.conns:
            if seq > conn.seq:
                conn.push(seq, message)

    def _schedule_catch_up(self, owner: str, st: OwnerState) -> None:
        if self._stopping.is_set():
            return
        if st.catch_up is not None and not st.catch_up.done():
            st.again = True
            return
        st.catch_up = asyncio.create_task(self._catch_up(owner, st), name=f"catch-up:{owner}")

    async def _catch_up(self, owner: str, st: OwnerState) -> None:
        while (
            self.owners.get(owner) is st
            and st.delivered is not None
            and not self._stopping.is_set()
        ):
            st.again = False
            try:
                rows = await self.store.events_after(owner, st.delivered)
            except Exception as exc:  # database trouble: the sweep will try again
                log.warning("catch-up for an owner failed: %s", type(exc).__name__)
                return
            for seq, message in rows:
                delivered = st.delivered
                if seq <= delivered:
                    continue
                if seq > delivered + 1:
                    # The log no longer holds what these connections missed: make them
                    # resync from a snapshot.
                    for conn in list(st.conns):
                        if conn.seq < seq - 1:
                            conn.close(CloseCode.TOO_SLOW, "missed events are gone: resync")
                self._fan_out(st, seq, message)
            if len(rows) < 500 and not st.again:
                return

    def resync(self) -> None:
        """Catch up every local owner from the database (after a broker reconnect)."""
        if self._stopping.is_set():
            return
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.create_task(self._resync(), name="hub-resync")

    async def _resync(self) -> None:
        owners = [o for o, st in self.owners.items() if st.delivered is not None]
        if not owners:
            return
        try:
            latest = await self.store.latest_seqs(owners)
        except Exception as exc:
            log.warning("resync failed: %s", type(exc).__name__)
            return
        for owner, seq in latest.items():
            st = self.owners.get(owner)
            if st is not None and st.delivered is not None and seq > st.delivered:
                self._schedule_catch_up(owner, st)

    async def _sweep_forever(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.sweep_interval)
            if not self._stopping.is_set():
                await self._resync()

    def close_all(self, code: int, reason: str) -> None:
        for conn in self.connections():
            conn.close(code, reason)
