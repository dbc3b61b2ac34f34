"""The feed log as the delivery side reads it: the four reads the hub needs.

Feeds are named by key (``server.feeds``: ``<tenant>/<feed>``).
``FeedLog`` is the small interface the hub depends on; ``SqlFeedLog`` reads the
``feed`` and ``feed_event`` tables (SQLite or PostgreSQL). Every read is one statement,
or (the replay) reads the append-only log up to a seq read just before, so none needs
a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server.changes import ORIGIN, FeedPos, Logged
from server.db import Engines
from server.feeds import USER, split_key, user_feed
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


@dataclass(frozen=True, slots=True)
class Replay:
    seq: int
    count: int
    messages: list[str]


class FeedLog(Protocol):
    """What the hub reads from the truth."""

    async def resume(self, key: str, since: int | None) -> Snapshot | Replay:
        """What a (re)connecting client needs of feed ``key``: the events after
        ``since`` when they are all still kept and not too many, else a snapshot (also
        when ``since`` is None or ahead of the log, e.g. after a restore)."""
        ...

    async def events_after(self, key: str, after: int, limit: int = EVENTS_PAGE) -> list[Logged]:
        """Kept events of feed ``key`` with seq > ``after``, in order (at most ``limit``)."""
        ...

    async def latest_seqs(self, keys: Iterable[str]) -> dict[str, int]:
        """The last seq of each feed that exists (feeds never written are left out)."""
        ...

    async def audience(self, tenant: str, user: str) -> list[str]:
        """The wire feeds ``user`` of ``tenant`` follows now: own feed first
        (``user:<id>``), then ``role:<r>`` of every role they are a member of (sorted),
        then ``user:<other>`` of everyone they stand in for now (sorted). Never empty."""
        ...


def _owner(key: str) -> str | None:
    """TEMPORARY (until the feed table has tenant and feed columns): the ``owner``
    column's value for a user feed's key; None for a role feed (no rows yet)."""
    _, feed = split_key(key)
    return feed[len(USER) :] if feed.startswith(USER) else None


_SNAPSHOT = (
    select(feed_t.c.seq.label("feed_seq"), feed_t.c.count.label("feed_count"), task_t)
    .select_from(
        feed_t.outerjoin(
            task_t,
            and_(task_t.c.owner == feed_t.c.owner, task_t.c.status == Status.RUNNING.value),
        )
    )
    .where(feed_t.c.owner == bindparam("owner"))
    .order_by(task_t.c.created_at.desc(), task_t.c.id)
)


async def read_pos(conn: AsyncConnection, owner: str) -> FeedPos:
    """Where ``owner``'s feed stands; ``ORIGIN`` for an owner never seen."""
    row = (
        await conn.execute(select(feed_t.c.seq, feed_t.c.count).where(feed_t.c.owner == owner))
    ).first()
    return FeedPos(int(row[0]), int(row[1])) if row else ORIGIN


async def read_snapshot(conn: AsyncConnection, owner: str) -> Snapshot:
    """The owner's running tasks and the seq/count they correspond to, consistently."""
    # One statement, so the tasks and the seq/count always agree without a
    # transaction: the feed row, joined to its owner's running tasks.
    rows = (await conn.execute(_SNAPSHOT, {"owner": owner})).all()
    if not rows:
        return Snapshot(0, 0, [])
    seq, count = int(rows[0].feed_seq), int(rows[0].feed_count)
    tasks = [TaskState.from_row(r._mapping).to_json() for r in rows if r.id is not None]
    return Snapshot(seq, count, tasks)


class SqlFeedLog:
    """``FeedLog`` on the database. Replays at most ``replay_limit`` events."""

    def __init__(self, engines: Engines, *, replay_limit: int = 1000) -> None:
        self.engines = engines
        self.replay_limit = replay_limit

    async def resume(self, key: str, since: int | None) -> Snapshot | Replay:
        owner = _owner(key)
        if owner is None:
            return Snapshot(0, 0, [])
        async with self.engines.reader.connect() as conn:
            if since is not None:
                pos = await read_pos(conn, owner)
                if since == pos.seq:
                    return Replay(pos.seq, pos.count, [])
                if since < pos.seq and pos.seq - since <= self.replay_limit:
                    messages = await self._events(conn, owner, since, pos.seq)
                    if len(messages) == pos.seq - since:
                        return Replay(pos.seq, pos.count, [e.message for e in messages])
            return await read_snapshot(conn, owner)

    async def events_after(self, key: str, after: int, limit: int = EVENTS_PAGE) -> list[Logged]:
        owner = _owner(key)
        if owner is None:
            return []
        async with self.engines.reader.connect() as conn:
            return await self._events(conn, owner, after, after + limit)

    async def latest_seqs(self, keys: Iterable[str]) -> dict[str, int]:
        key_of_owner = {o: k for k in keys if (o := _owner(k)) is not None}
        owners = list(key_of_owner)
        out: dict[str, int] = {}
        async with self.engines.reader.connect() as conn:
            for i in range(0, len(owners), SEQS_PAGE):
                chunk = owners[i : i + SEQS_PAGE]
                rows = await conn.execute(
                    select(feed_t.c.owner, feed_t.c.seq).where(feed_t.c.owner.in_(chunk))
                )
                out.update({key_of_owner[r.owner]: int(r.seq) for r in rows})
        return out

    async def audience(self, tenant: str, user: str) -> list[str]:
        # TEMPORARY: the own feed only, until roles and substitutions have tables.
        return [user_feed(user)]

    async def _events(
        self, conn: AsyncConnection, owner: str, after: int, upto: int
    ) -> list[Logged]:
        rows = await conn.execute(
            select(event_t.c.seq, event_t.c.count, event_t.c.message)
            .where(and_(event_t.c.owner == owner, event_t.c.seq > after, event_t.c.seq <= upto))
            .order_by(event_t.c.seq)
        )
        return [Logged(int(seq), int(count), str(message)) for seq, count, message in rows]
