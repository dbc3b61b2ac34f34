"""The hub: this process's connections, grouped by feed, kept in seq order per feed.

A connection follows several feeds (its user's own, their roles', those of people they
stand in for: ``FeedLog.audience``). The hub keeps one ``FeedState`` per feed key with
local followers, and one ``UserState`` per (tenant, user) with local connections.

Guarantees, per feed, for every local connection following it: each event is pushed
once, in seq order, with no gaps. The decisions are the feed's ``Sequencer`` (pure,
unit-tested); the hub does what they call for:

- ``on_envelope`` (called by the broker, never blocking): deliver (one encoded message
  fanned out to every follower), drop a duplicate, or start a catch-up task that reads
  the gap from the feed log (one read for all followers).
- ``join``: read who the user follows, then each feed's view, on one connection
  (snapshot, or replay after ``since`` / ``since_feeds``), read again while a view is
  too old to patch from the recent events, then go live on every feed at once (no await in between).
- ``refollow`` (when someone's audience may have changed): their connections join the
  feeds they now follow (``feed.joined``) and leave the others (``feed.left``).
- ``resync`` (after a broker reconnect, and every ``sweep_interval``) compares each
  feed's delivered seq with the database and catches up the ones behind.
- ``heartbeat`` (every ``heartbeat_s``) pings each connection with every followed feed's
  seq and counts as it was given them: a client whose own state differs resynchronises.
- ``session`` is how an endpoint uses all this: join, token expiry, leave and close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from server import upkeep
from server.auth import User
from server.broker import Interest, NoInterest
from server.changes import Envelope
from server.connection import Connection, ConnState, Position, Sender
from server.db import DATABASE_ERRORS
from server.errors import CloseCode
from server.feedlog import EVENTS_PAGE, FeedLog, FeedReader, Replay, Snapshot
from server.feeds import USER, key_of, split_key, user_feed
from server.following import FeedState, UserState, with_own
from server.metrics import UNCOUNTED
from server.seen import SIDE_SEQ
from server.sequencer import Verdict
from server.session import Session
from server.views import Views, first_messages, joined_message, left_message

log = logging.getLogger("taskbell.hub")


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
        self.feeds: dict[str, FeedState] = {}
        self.users: dict[tuple[str, str], UserState] = {}
        self.sweep_interval = sweep_interval
        self.queue_limit = queue_limit
        self.heartbeat_s = heartbeat_s
        self._sweeper: asyncio.Task[None] | None = None
        self._beater: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._refollow_later: set[tuple[str, str]] = set()  # refollows the database refused
        self.metrics = UNCOUNTED  # the app sets its own

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._sweeper = asyncio.create_task(
            upkeep.every(self.sweep_interval, self._stopping, self.sweep), name="hub-sweeper"
        )
        if self.heartbeat_s > 0:  # 0: no heartbeat (benchmarks measuring without one)
            self._beater = asyncio.create_task(
                upkeep.beat_forever(self.heartbeat_s, self._stopping, self.heartbeat),
                name="hub-heartbeat",
            )

    async def stop(self) -> None:
        """Stop the sweeper, catch-ups and refollows. They are let finish their current
        query (a task cancelled inside a database call can leave its connection
        unreturned), and cancelled only if that takes longer than a few seconds."""
        self._stopping.set()
        tasks = [t for t in (self._sweeper, self._beater, self._resync_task) if t is not None]
        tasks += [st.catch_up for st in self.feeds.values() if st.catch_up is not None]
        tasks += [us.refollow for us in self.users.values() if us.refollow is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=5.0)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def connections(self) -> list[Connection]:
        return [c for us in self.users.values() for c in us.conns]

    @property
    def connection_count(self) -> int:
        return sum(len(us.conns) for us in self.users.values())

    def sockets_of(self, tenant: str, user: str) -> int:
        """How many connections ``user`` has here, joined or joining."""
        us = self.users.get((tenant, user))
        return 0 if us is None else len(us.conns) + us.joining

    def close_all(self, code: int, reason: str) -> None:
        for conn in self.connections():
            conn.close(code, reason)

    def close_user(self, tenant: str, user: str, code: int, reason: str) -> None:
        """Close every local connection of ``user`` in ``tenant`` (a revocation)."""
        us = self.users.get((tenant, user))
        if us is not None:
            for conn in list(us.conns):
                conn.close(code, reason)

    # ---------------------------------------------------------------- joining and leaving

    def session(
        self,
        sender: Sender,
        who: User,
        since: int | None,
        since_feeds: Mapping[str, int] | None = None,
    ) -> Session:
        """``async with hub.session(...) as s``: a joined connection for ``who`` that
        closes at token expiry and leaves the hub on exit. ``since`` resumes the own
        feed, ``since_feeds`` (wire feed name → seq) the others. Raises ``Unavailable``
        on entry when the database cannot give the view (the connection is then closed
        with 1013)."""
        conn = Connection(sender, who.tenant, who.id, self.queue_limit)
        return Session(self, conn, who, since, dict(since_feeds or {}))

    async def join(
        self, conn: Connection, since: int | None, since_feeds: Mapping[str, int] | None = None
    ) -> None:
        """Send the snapshot (or the replay of every followed feed) and start live
        delivery. Raises the database's own errors when the view cannot be read."""
        tenant, user = conn.tenant, conn.user
        us = self._user_state(tenant, user)
        us.joining += 1
        states: list[FeedState] = []
        version = us.version
        read = False
        try:
            # (One connection for the audience and every view: a checkout each cost
            # more than the reads themselves on SQLite.)
            async with self.log.reading() as reader:
                feeds = with_own(await reader.audience(tenant, user), user)
                resume_from = dict(since_feeds or {})
                resume_from.pop(user_feed(user), None)
                if since is not None:
                    resume_from[user_feed(user)] = since
                for feed in feeds:
                    states.append(self._feed_state(key_of(tenant, feed)))
                views = await self._read_views(reader, states, feeds, resume_from)
            read = True
        finally:
            us.joining -= 1
            for st in states:
                st.joining -= 1
            if not read or conn.state is ConnState.CLOSING:
                self._forget_idle(conn, states)  # nothing joined: let go of what was held
        if conn.state is ConnState.CLOSING:
            return
        for message in first_messages(feeds, views):
            conn.push_raw(message)
        for st, feed in zip(states, feeds, strict=True):
            view = views[feed]
            self._follow(conn, st, feed, view.seq, view.count, view.postponed)
        us.conns.add(conn)
        self.metrics.joined(snapshot=isinstance(views[feeds[0]], Snapshot))
        conn.start()
        if us.version != version:
            self.refollow(tenant, user)  # the audience changed while we read it

    async def _read_views(
        self, reader: FeedReader, states: list[FeedState], feeds: list[str], since: dict[str, int]
    ) -> Views:
        """Every feed's view, each still usable (``fits``) when this returns: replays
        when every feed can be replayed, else snapshots of all."""
        views: Views = {}
        snapshots = any(feed not in since for feed in feeds)  # (a feed with no since)
        while True:
            stale = [
                (st, feed)
                for st, feed in zip(states, feeds, strict=True)
                if feed not in views
                or not st.seq.fits(views[feed].seq)
                or (snapshots and isinstance(views[feed], Replay))
            ]
            if not stale:
                return views
            for st, feed in stale:
                # (Each read may take a while: events keep arriving meanwhile, so the
                # loop looks at every view again once all are read.)
                view = await reader.resume(st.key, None if snapshots else since.get(feed))
                views[feed] = view
                snapshots = snapshots or isinstance(view, Snapshot)

    def _follow(
        self, conn: Connection, st: FeedState, feed: str, seq: int, count: int, postponed: int
    ) -> None:
        """``conn`` follows ``st`` from a view at ``seq``: what it missed since, then live."""
        pos = conn.feeds[st.key] = Position(feed, seq, count, postponed)
        for event in st.seq.start_from(seq):
            conn.deliver(pos, event.seq, event.count, event.message, event.postponed)
        st.conns[conn] = pos
        if st.seq.behind(seq):
            self._schedule_catch_up(st)

    def _unfollow(self, conn: Connection, st: FeedState) -> None:
        st.conns.pop(conn, None)
        conn.feeds.pop(st.key, None)
        self._forget_if_idle(st)

    def leave(self, conn: Connection) -> None:
        us = self.users.get((conn.tenant, conn.user))
        if us is None or conn not in us.conns:
            return
        self.metrics.left(conn.close_code)
        us.conns.discard(conn)
        for key in list(conn.feeds):
            st = self.feeds.get(key)
            if st is not None:
                self._unfollow(conn, st)
        self._forget_user_if_idle(conn.tenant, conn.user, us)

    def _user_state(self, tenant: str, user: str) -> UserState:
        us = self.users.get((tenant, user))
        if us is None:
            phase = upkeep.phase_of(tenant, user)
            us = self.users[(tenant, user)] = UserState(phase=phase)
        return us

    def _feed_state(self, key: str) -> FeedState:
        """The feed's state, counted as joining (the caller decrements ``joining``)."""
        st = self.feeds.get(key)
        if st is None:
            st = self.feeds[key] = FeedState(key)
            self.interest.hold(key)
        st.joining += 1
        return st

    def _forget_idle(self, conn: Connection, states: list[FeedState]) -> None:
        for st in states:
            self._forget_if_idle(st)
        us = self.users.get((conn.tenant, conn.user))
        if us is not None:
            self._forget_user_if_idle(conn.tenant, conn.user, us)

    def _forget_if_idle(self, st: FeedState) -> None:
        if not st.conns and st.joining == 0 and self.feeds.get(st.key) is st:
            del self.feeds[st.key]
            self.interest.release(st.key)
            if st.catch_up is not None:
                st.catch_up.cancel()

    def _forget_user_if_idle(self, tenant: str, user: str, us: UserState) -> None:
        if not us.conns and us.joining == 0 and self.users.get((tenant, user)) is us:
            del self.users[(tenant, user)]
            if us.refollow is not None:
                us.refollow.cancel()

    # ---------------------------------------------------------------- following more or fewer

    def refollow(self, tenant: str, user: str) -> None:
        """``user``'s audience may have changed: their local connections join the feeds
        they now follow and leave the others, in a task of the hub's (this returns at
        once). Calls for one user while one runs are folded into one more round; a
        round that finds nothing changed sends nothing."""
        us = self.users.get((tenant, user))
        if us is None or self._stopping.is_set():
            return
        us.version += 1
        if us.refollow is not None and not us.refollow.done():
            us.again = True
            return
        us.refollow = asyncio.create_task(
            self._refollow(tenant, user, us), name=f"refollow:{tenant}/{user}"
        )

    async def _refollow(self, tenant: str, user: str, us: UserState) -> None:
        while self.users.get((tenant, user)) is us and not self._stopping.is_set():
            us.again = False
            try:
                feeds = with_own(await self.log.audience(tenant, user), user)
                wanted = {key_of(tenant, f): f for f in feeds}
                for conn in list(us.conns):
                    for key in [k for k in conn.feeds if k not in wanted]:
                        st = self.feeds.get(key)
                        conn.push_raw(left_message(conn.feeds[key].feed))
                        if st is not None:
                            self._unfollow(conn, st)
                        else:
                            conn.feeds.pop(key, None)
                for key, feed in wanted.items():
                    if any(key not in c.feeds for c in us.conns):
                        await self._add_feed(us, key, feed)
            except DATABASE_ERRORS as exc:
                # The audience log will not ask again for this change: the sweep does.
                log.warning("refollow failed: %s", type(exc).__name__)
                self._refollow_later.add((tenant, user))
                return
            if not us.again:
                return

    async def _add_feed(self, us: UserState, key: str, feed: str) -> None:
        st = self._feed_state(key)
        try:
            try:
                view = await self.log.resume(key, None)
                while not st.seq.fits(view.seq):
                    view = await self.log.resume(key, None)
            finally:
                st.joining -= 1
            if not isinstance(view, Snapshot):  # (a log never replays from None)
                raise TypeError("resume(key, None) must answer a snapshot")
            message = joined_message(feed, view)
            for conn in us.conns:
                if key not in conn.feeds and conn.state is ConnState.OPEN:
                    conn.push_raw(message)
                    self._follow(conn, st, feed, view.seq, view.count, view.postponed)
        finally:
            self._forget_if_idle(st)  # nobody took it (all gone, or the read failed)

    # ---------------------------------------------------------------- delivery

    def on_envelope(self, env: Envelope) -> None:
        """Broker callback: deliver, drop a duplicate, or schedule gap filling."""
        if env.seq == SIDE_SEQ:
            self._to_person(env)
            return
        st = self.feeds.get(env.key)
        if st is None:
            return
        verdict = st.seq.offer(env.seq, env.count, env.message, env.postponed)
        if verdict is Verdict.DELIVER:
            self._fan_out(st, env.seq, env.count, env.message, env.postponed)
        elif verdict is Verdict.GAP:
            self._schedule_catch_up(st)

    def _to_person(self, env: Envelope) -> None:
        """A message outside the seq flow for the person whose own feed ``env.key`` is
        (``seen``): to their own connections only, not to those standing in for them."""
        tenant, feed = split_key(env.key)
        if not feed.startswith(USER):
            return
        us = self.users.get((tenant, feed[len(USER) :]))
        if us is None or env.message in us.side:
            return
        us.side.append(env.message)
        for conn in list(us.conns):
            conn.push_raw(env.message)

    def _fan_out(self, st: FeedState, seq: int, count: int, message: str, postponed: int) -> None:
        delivered = 0
        for conn, pos in st.conns.items():
            if seq > pos.seq:
                conn.deliver(pos, seq, count, message, postponed)
                delivered += 1
        self.metrics.events_delivered.inc(delivered)

    def _schedule_catch_up(self, st: FeedState) -> None:
        if self._stopping.is_set():
            return
        if st.catch_up is not None and not st.catch_up.done():
            st.again = True
            return
        st.catch_up = asyncio.create_task(self._catch_up(st), name=f"catch-up:{st.key}")

    async def _catch_up(self, st: FeedState) -> None:
        while (
            self.feeds.get(st.key) is st
            and st.seq.delivered is not None
            and not self._stopping.is_set()
        ):
            st.again = False
            try:
                rows = await self.log.events_after(st.key, st.seq.delivered, EVENTS_PAGE)
            except DATABASE_ERRORS as exc:  # database trouble: the sweep will try again
                log.warning("catch-up for a feed failed: %s", type(exc).__name__)
                return
            for step in st.seq.take_log(rows):
                if step.lost:
                    # The log no longer holds what these connections missed: make them
                    # resync from a snapshot.
                    for conn, pos in list(st.conns.items()):
                        if pos.seq < step.seq - 1:
                            conn.close(CloseCode.TOO_SLOW, "missed events are gone: resync")
                self._fan_out(st, step.seq, step.count, step.message, step.postponed)
            if len(rows) < EVENTS_PAGE and not st.again:
                return

    def resync(self) -> None:
        """Catch up every local feed from the database (after a broker reconnect)."""
        if self._stopping.is_set():
            return
        if self._resync_task is None or self._resync_task.done():
            self._resync_task = asyncio.create_task(self._resync(), name="hub-resync")

    async def _resync(self) -> None:
        keys = [k for k, st in self.feeds.items() if st.seq.delivered is not None]
        if not keys:
            return
        try:
            latest = await self.log.latest_seqs(keys)
        except DATABASE_ERRORS as exc:
            log.warning("resync failed: %s", type(exc).__name__)
            return
        for key, seq in latest.items():
            st = self.feeds.get(key)
            if st is not None and st.seq.behind(seq):
                self._schedule_catch_up(st)

    def heartbeat(self, tick: int | None = None) -> None:
        """Queue a ping on every live connection (only those of users in phase
        ``tick``, when given): ``upkeep.beat``."""
        upkeep.beat(self.users.values(), tick)

    async def sweep(self) -> None:
        """One sweep: catch up the feeds behind the database, retry refused refollows."""
        await self._resync()
        later, self._refollow_later = self._refollow_later, set()
        for tenant, user in sorted(later):
            self.refollow(tenant, user)
