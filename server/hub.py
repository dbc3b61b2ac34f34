"""The hub: this process's connections, grouped by owner, kept in seq order.

Guarantees, per owner, for every local connection: each event is pushed once, in seq
order, with no gaps. The decisions are the owner's ``Sequencer`` (pure, unit-tested);
the hub does what they call for:

- ``on_envelope`` (called by the broker, never blocking): deliver, drop a duplicate, or
  start a catch-up task that reads the gap from the feed log.
- ``join``: read the new connection's view (snapshot, or replay after ``since``), read
  again while the view is too old to patch from the recent events, then go live.
- ``resync`` (after a broker reconnect, and every ``sweep_interval``) compares each
  owner's delivered seq with the database and catches up the ones behind.
- ``heartbeat`` (every ``heartbeat_s``) pings each connection with the seq and count it
  was last given, per feed: a client whose own state differs resynchronises by itself.
- ``session`` is how an endpoint uses all this: join, token expiry, leave and close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from dataclasses import dataclass, field

from server.auth import User
from server.broker import Interest, NoInterest
from server.changes import Envelope
from server.connection import Connection, ConnState, Sender
from server.db import DATABASE_ERRORS
from server.errors import CloseCode
from server.feedlog import EVENTS_PAGE, FeedLog, Snapshot
from server.feeds import split_key, user_key
from server.metrics import UNCOUNTED
from server.sequencer import Sequencer, Verdict
from server.session import Session
from server.wire import HeartbeatMessage, SnapshotMessage, SyncedMessage, dumps

log = logging.getLogger("taskbell.hub")

BEAT_TICKS = 25  # a heartbeat round is spread over this many ticks (owners hashed in)


@dataclass(eq=False)
class OwnerState:
    conns: set[Connection] = field(default_factory=set)
    seq: Sequencer = field(default_factory=Sequencer)
    joining: int = 0
    catch_up: asyncio.Task[None] | None = None
    again: bool = False
    phase: int = 0  # which tick of the heartbeat round pings this owner's connections


class Hub:
    def __init__(
        self,
        log: FeedLog,
        *,
        sweep_interval: float = 5.0,
        queue_limit: int = 1024,
        heartbeat_s: float = 25.0,
        interest: Interest | None = None,
    ) -> None:
        self.log = log
        self.interest = interest if interest is not None else NoInterest()
        self.owners: dict[str, OwnerState] = {}
        self.sweep_interval = sweep_interval
        self.queue_limit = queue_limit
        self.heartbeat_s = heartbeat_s
        self._sweeper: asyncio.Task[None] | None = None
        self._beater: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.metrics = UNCOUNTED  # the app sets its own

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="hub-sweeper")
        self._beater = asyncio.create_task(self._beat_forever(), name="hub-heartbeat")

    async def stop(self) -> None:
        """Stop the sweeper and catch-ups. They are let finish their current query (a
        task cancelled inside a database call can leave its connection unreturned), and
        cancelled only if that takes longer than a few seconds."""
        self._stopping.set()
        tasks = [t for t in (self._sweeper, self._beater, self._resync_task) if t is not None]
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

    def close_all(self, code: int, reason: str) -> None:
        for conn in self.connections():
            conn.close(code, reason)

    def close_user(self, tenant: str, user: str, code: int, reason: str) -> None:
        """Close every local connection of ``user`` in ``tenant`` (a revocation)."""
        st = self.owners.get(user_key(tenant, user))
        if st is not None:
            for conn in list(st.conns):
                conn.close(code, reason)

    # ---------------------------------------------------------------- joining and leaving

    def session(self, sender: Sender, who: User, since: int | None) -> Session:
        """``async with hub.session(...) as s``: a joined connection for ``who`` that
        closes at token expiry and leaves the hub on exit. Raises ``Unavailable`` on
        entry when the database cannot give the view (the connection is then closed
        with 1013)."""
        return Session(self, Connection(sender, who.key, self.queue_limit), who, since)

    async def join(self, conn: Connection, since: int | None) -> None:
        """Send the snapshot (or the replay after ``since``) and start live delivery.
        Raises the database's own errors when the view cannot be read."""
        st = self.owners.get(conn.owner)
        if st is None:
            st = self.owners[conn.owner] = OwnerState(
                phase=zlib.crc32(conn.owner.encode()) % BEAT_TICKS
            )
            self.interest.hold(conn.owner)
        st.joining += 1
        try:
            view = await self.log.resume(conn.owner, since)
            while not st.seq.fits(view.seq):
                # Too much happened during our read to patch from `recent`: read again.
                view = await self.log.resume(conn.owner, since)
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
        conn.seq, conn.count = view.seq, view.count
        for event in st.seq.start_from(view.seq):
            conn.push(event.seq, event.count, event.message)
        st.conns.add(conn)
        self.metrics.joined(snapshot=isinstance(view, Snapshot))
        conn.start()
        if st.seq.behind(view.seq):
            self._schedule_catch_up(conn.owner, st)

    def leave(self, conn: Connection) -> None:
        st = self.owners.get(conn.owner)
        if st is not None:
            if conn in st.conns:
                self.metrics.left(conn.close_code)
            st.conns.discard(conn)
            self._forget_if_idle(conn.owner, st)

    def _forget_if_idle(self, owner: str, st: OwnerState) -> None:
        if not st.conns and st.joining == 0 and self.owners.get(owner) is st:
            del self.owners[owner]
            self.interest.release(owner)
            if st.catch_up is not None:
                st.catch_up.cancel()

    # ---------------------------------------------------------------- delivery

    def on_envelope(self, env: Envelope) -> None:
        """Broker callback: deliver, drop a duplicate, or schedule gap filling."""
        st = self.owners.get(env.key)
        if st is None:
            return
        verdict = st.seq.offer(env.seq, env.count, env.message)
        if verdict is Verdict.DELIVER:
            self._fan_out(st, env.seq, env.count, env.message)
        elif verdict is Verdict.GAP:
            self._schedule_catch_up(env.key, st)

    def _fan_out(self, st: OwnerState, seq: int, count: int, message: str) -> None:
        for conn in st.conns:
            if seq > conn.seq:
                conn.push(seq, count, message)
                self.metrics.events_delivered.inc()

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
            and st.seq.delivered is not None
            and not self._stopping.is_set()
        ):
            st.again = False
            try:
                rows = await self.log.events_after(owner, st.seq.delivered, EVENTS_PAGE)
            except DATABASE_ERRORS as exc:  # database trouble: the sweep will try again
                log.warning("catch-up for an owner failed: %s", type(exc).__name__)
                return
            for step in st.seq.take_log(rows):
                if step.lost:
                    # The log no longer holds what these connections missed: make them
                    # resync from a snapshot.
                    for conn in list(st.conns):
                        if conn.seq < step.seq - 1:
                            conn.close(CloseCode.TOO_SLOW, "missed events are gone: resync")
                self._fan_out(st, step.seq, step.count, step.message)
            if len(rows) < EVENTS_PAGE and not st.again:
                return

    def resync(self) -> None:
        """Catch up every local owner from the database (after a broker reconnect)."""
        if self._stopping.is_set():
            return
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.create_task(self._resync(), name="hub-resync")

    async def _resync(self) -> None:
        owners = [o for o, st in self.owners.items() if st.seq.delivered is not None]
        if not owners:
            return
        try:
            latest = await self.log.latest_seqs(owners)
        except DATABASE_ERRORS as exc:
            log.warning("resync failed: %s", type(exc).__name__)
            return
        for owner, seq in latest.items():
            st = self.owners.get(owner)
            if st is not None and st.seq.behind(seq):
                self._schedule_catch_up(owner, st)

    def refollow(self, tenant: str, user: str) -> None:
        """The person's feeds may have changed (interim: connections follow their own
        feed only)."""

    def heartbeat(self, tick: int | None = None) -> None:
        """Queue a ping on every live connection (only those of owners in phase
        ``tick``, when given) carrying the position of its feed as this connection was
        given it (encoded once per owner and position)."""
        for owner, st in self.owners.items():
            if tick is not None and st.phase != tick:
                continue
            feed = split_key(owner)[1]
            encoded: dict[tuple[int, int], str] = {}
            for conn in st.conns:
                if conn.state is not ConnState.OPEN:
                    continue
                pos = (conn.seq, conn.count)
                message = encoded.get(pos)
                if message is None:
                    beat: HeartbeatMessage = {
                        "type": "ping",
                        "feeds": {feed: {"seq": conn.seq, "count": conn.count}},
                    }
                    message = encoded[pos] = dumps(beat)
                conn.reply(message)

    async def _beat_forever(self) -> None:
        # One round every heartbeat_s, spread over BEAT_TICKS ticks by owner: pinging
        # every socket at once would hold up live events behind thousands of pings. The
        # first round starts a whole interval after start-up, as a single timer would.
        tick = 0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.heartbeat_s)
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.heartbeat_s / BEAT_TICKS)
            if not self._stopping.is_set():
                self.heartbeat(tick)
                tick = (tick + 1) % BEAT_TICKS

    async def _sweep_forever(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.sweep_interval)
            if not self._stopping.is_set():
                await self._resync()
