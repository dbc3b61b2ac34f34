"""The feed log as the delivery side reads it: the reads the hub needs.

``FeedLog`` is the small interface the hub depends on; ``SqlFeedLog`` reads the
``feed`` and ``feed_event`` tables (SQLite or PostgreSQL). Every read is one statement,
or (the replay) reads the append-only log up to a seq read just before, so none needs
a transaction. ``reading()`` gives several reads in a row one pooled connection (a join
reads the audience and every feed's view: one checkout instead of one per read, which on
aiosqlite is several thread hand-offs each).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import direct
from server.audiences import feeds_of
from server.changes import ORIGIN, FeedPos, Logged
from server.db import Engines
from server.feeds import ROLE, USER, key_of, per_tenant, split_key
from server.models import event_t, feed_t, task_t
from server.transitions import TaskState
from server.wire import Status, TaskJSON

EVENTS_PAGE = 500  # the most events one ``events_after`` returns
SEQS_PAGE = 500  # owners per statement in ``latest_seqs``


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    count: int
    tasks: list[TaskJSON]
    postponed: int = 0


@dataclass(frozen=True, slots=True)
class Replay:
    seq: int
    count: int
    messages: list[str]
    postponed: int = 0


class FeedReader(Protocol):
    """Reads on one connection (``FeedLog.reading``)."""

    async def resume(self, key: str, since: int | None) -> Snapshot | Replay: ...

    async def audience(self, tenant: str, user: str) -> list[str]: ...


class FeedLog(Protocol):
    """What the hub reads from the truth. Feeds are named by key (``server.feeds``)."""

    def reading(self) -> AbstractAsyncContextManager[FeedReader]:
        """``async with log.reading() as r``: ``resume`` and ``audience`` on one
        connection, for several reads in a row."""
        ...

    async def resume(self, key: str, since: int | None) -> Snapshot | Replay:
        """What a (re)connecting client needs: the events after ``since`` when they are
        all still kept and not too many, else a snapshot (also when ``since`` is ahead
        of the log, e.g. after a restore)."""
        ...

    async def events_after(self, key: str, after: int, limit: int = EVENTS_PAGE) -> list[Logged]:
        """Kept events of the feed with seq > ``after``, in order (at most ``limit``)."""
        ...

    async def latest_seqs(self, keys: Iterable[str]) -> dict[str, int]:
        """The last seq of each feed that exists (feeds never seen are left out)."""
        ...

    async def audience(self, tenant: str, user: str) -> list[str]:
        """The feeds ``user`` follows now (``server.audiences.feeds_of``)."""
        ...


def _snapshot_query(by_role: bool) -> Any:
    # One statement, so the tasks and the seq/count always agree without a transaction:
    # the feed row, joined to the running tasks in that feed.
    if by_role:
        in_feed = and_(task_t.c.role == bindparam("who"), task_t.c.owner.is_(None))
    else:
        in_feed = task_t.c.owner == bindparam("who")
    return (
        select(
            feed_t.c.seq.label("feed_seq"),
            feed_t.c.count.label("feed_count"),
            feed_t.c.postponed.label("feed_postponed"),
            task_t,
        )
        .select_from(
            feed_t.outerjoin(
                task_t,
                and_(
                    task_t.c.tenant == feed_t.c.tenant,
                    in_feed,
                    task_t.c.status == Status.RUNNING.value,
                ),
            )
        )
        .where(and_(feed_t.c.tenant == bindparam("tenant"), feed_t.c.feed == bindparam("feed")))
        .order_by(task_t.c.created_at.desc(), task_t.c.id)
    )


_SNAPSHOT_USER = _snapshot_query(by_role=False)
_SNAPSHOT_ROLE = _snapshot_query(by_role=True)


_POS = select(feed_t.c.seq, feed_t.c.count, feed_t.c.postponed).where(
    and_(feed_t.c.tenant == bindparam("tenant"), feed_t.c.feed == bindparam("feed"))
)
_EVENTS = (
    select(event_t.c.seq, event_t.c.count, event_t.c.message, event_t.c.postponed)
    .where(
        and_(
            event_t.c.tenant == bindparam("tenant"),
            event_t.c.feed == bindparam("feed"),
            event_t.c.seq > bindparam("after"),
            event_t.c.seq <= bindparam("upto"),
        )
    )
    .order_by(event_t.c.seq)
)


async def read_pos(conn: AsyncConnection, key: str) -> FeedPos:
    """Where the feed stands; ``ORIGIN`` for a feed never seen."""
    tenant, feed = split_key(key)
    row = (await direct.execute(conn, _POS, {"tenant": tenant, "feed": feed})).first()
    return FeedPos(int(row[0]), int(row[1]), int(row[2])) if row else ORIGIN


async def read_positions(
    conn: AsyncConnection, tenant: str, feeds: Sequence[str]
) -> dict[str, FeedPos]:
    """Where each of a tenant's ``feeds`` stands, in one statement; ``ORIGIN`` for a
    feed never seen."""
    rows = (
        await conn.execute(
            select(feed_t.c.feed, feed_t.c.seq, feed_t.c.count, feed_t.c.postponed).where(
                and_(feed_t.c.tenant == tenant, feed_t.c.feed.in_(list(feeds)))
            )
        )
    ).all()
    found = {str(r[0]): FeedPos(int(r[1]), int(r[2]), int(r[3])) for r in rows}
    return {f: found.get(f, ORIGIN) for f in feeds}


async def read_snapshot(conn: AsyncConnection, key: str) -> Snapshot:
    """The feed's running tasks and the seq/count they correspond to, consistently."""
    tenant, feed = split_key(key)
    by_role = feed.startswith(ROLE)
    who = feed[len(ROLE) :] if by_role else feed[len(USER) :]
    query = _SNAPSHOT_ROLE if by_role else _SNAPSHOT_USER
    rows = (await direct.execute(conn, query, {"tenant": tenant, "feed": feed, "who": who})).all()
    if not rows:
        return Snapshot(0, 0, [], 0)
    seq, count = int(rows[0].feed_seq), int(rows[0].feed_count)
    tasks = [TaskState.from_row(r._mapping).to_json() for r in rows if r.id is not None]
    return Snapshot(seq, count, tasks, int(rows[0].feed_postponed))


class SqlFeedLog:
    """``FeedLog`` on the database. Replays at most ``replay_limit`` events."""

    def __init__(self, engines: Engines, *, replay_limit: int = 1000) -> None:
        self.engines = engines
        self.replay_limit = replay_limit

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[FeedReader]:
        # (On SQLite the joins' own inline readers: ``Engines.join_reads``.)
        async with self.engines.join_reads() as conn:
            yield _SqlReader(self, conn)

    async def resume(self, key: str, since: int | None) -> Snapshot | Replay:
        async with self.engines.reader.connect() as conn:
            return await self._resume(conn, key, since)

    async def _resume(
        self, conn: AsyncConnection, key: str, since: int | None
    ) -> Snapshot | Replay:
        if since is not None:
            pos = await read_pos(conn, key)
            if since == pos.seq:
                return Replay(pos.seq, pos.count, [], pos.postponed)
            if since < pos.seq and pos.seq - since <= self.replay_limit:
                messages = await self._events(conn, key, since, pos.seq)
                if len(messages) == pos.seq - since:
                    done = [e.message for e in messages]
                    return Replay(pos.seq, pos.count, done, pos.postponed)
        return await read_snapshot(conn, key)

    async def events_after(self, key: str, after: int, limit: int = EVENTS_PAGE) -> list[Logged]:
        async with self.engines.reader.connect() as conn:
            return await self._events(conn, key, after, after + limit)

    async def latest_seqs(self, keys: Iterable[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        async with self.engines.reader.connect() as conn:
            for tenant, feeds in per_tenant(split_key(k) for k in keys):
                for i in range(0, len(feeds), SEQS_PAGE):
                    chunk = feeds[i : i + SEQS_PAGE]
                    rows = await conn.execute(
                        select(feed_t.c.feed, feed_t.c.seq).where(
                            and_(feed_t.c.tenant == tenant, feed_t.c.feed.in_(chunk))
                        )
                    )
                    out.update({key_of(tenant, r.feed): int(r.seq) for r in rows})
        return out

    async def audience(self, tenant: str, user: str) -> list[str]:
        async with self.engines.reader.connect() as conn:
            return await feeds_of(conn, tenant, user)

    async def _events(self, conn: AsyncConnection, key: str, after: int, upto: int) -> list[Logged]:
        tenant, feed = split_key(key)
        params = {"tenant": tenant, "feed": feed, "after": after, "upto": upto}
        rows = await direct.execute(conn, _EVENTS, params)
        return [
            Logged(int(seq), int(count), str(message), int(postponed))
            for seq, count, message, postponed in rows
        ]


class _SqlReader:
    """``FeedReader`` on one checked-out connection of ``SqlFeedLog``."""

    __slots__ = ("conn", "log")

    def __init__(self, log: SqlFeedLog, conn: AsyncConnection) -> None:
        self.log = log
        self.conn = conn

    async def resume(self, key: str, since: int | None) -> Snapshot | Replay:
        return await self.log._resume(self.conn, key, since)

    async def audience(self, tenant: str, user: str) -> list[str]:
        return await feeds_of(self.conn, tenant, user)
