"""What a person has seen: "new since you last looked".

Per (tenant, user) the database keeps, for each feed they follow, the last ``seq`` they
have seen (``seen`` table: one row per feed). A card is **new** when the task entered
its feed (``task.added``) at a seq past that mark. The marks live on the server so that
every tab and device of the person agrees, and only ever move forward.

- ``advance`` (pure) decides what a mark request changes: feeds not followed are
  ignored (as ``since_feeds`` ignores them), a seq past the feed's head is taken as the
  head (nobody has seen the future), and a mark never moves backwards.
- ``mark`` applies one request inside the write transaction (``MarkSeen``) and returns
  the ``seen`` message for the person's sockets; ``read`` and ``new_tasks`` are what
  ``GET /me/seen`` answers.

The ``seen`` message travels through the broker on the person's own feed's channel with
``SIDE_SEQ`` (0) in place of a seq, so it reaches their sockets on every instance
(server/hub.py hands it to the person's own connections, outside the seq flow).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, TypedDict

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from server.audiences import feeds_of
from server.changes import Envelope
from server.feedlog import read_pos
from server.feeds import key_of, user_key
from server.models import event_t, seen_t
from server.wire import EventType, SinceFeeds, dumps

SIDE_SEQ = 0  # an envelope with this seq is a message outside the seq flow (server/hub.py)
NEW_LIMIT = 500  # the most new-task marks ``GET /me/seen`` lists per feed


class SeenRequest(BaseModel):
    """Body of ``PUT /me/seen``: ``{"feeds": {"<feed>": seq}}`` (at most as many feeds
    as ``since_feeds`` takes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    feeds: Annotated[SinceFeeds, Field()]


class NewJSON(TypedDict):
    feed: str
    task_id: str
    seq: int


class SeenMessage(TypedDict):
    type: str
    feeds: dict[str, int]


@dataclass(frozen=True, slots=True)
class Marked:
    """What ``MarkSeen`` left: the person's marks of the feeds they follow, and the feeds
    the request named that they do not follow (ignored)."""

    marks: dict[str, int]
    ignored: list[str]


@dataclass(frozen=True, slots=True)
class Advance:
    """What one mark request does: the rows to write, and the feeds it named that the
    person does not follow."""

    writes: dict[str, int]
    ignored: list[str]


def advance(
    stored: Mapping[str, int], wanted: Mapping[str, int], heads: Mapping[str, int]
) -> Advance:
    """``heads``: every feed followed → its current seq. Pure."""
    writes: dict[str, int] = {}
    ignored: list[str] = []
    for feed, seq in wanted.items():
        if feed not in heads:
            ignored.append(feed)
            continue
        target = min(seq, heads[feed])
        if target > stored.get(feed, 0):
            writes[feed] = target
    return Advance(writes, sorted(ignored))


def seen_message(marks: Mapping[str, int]) -> str:
    message: SeenMessage = {"type": "seen", "feeds": dict(marks)}
    return dumps(message)


async def read(conn: AsyncConnection, tenant: str, user: str) -> dict[str, int]:
    """Every mark of the person (feeds they no longer follow included)."""
    rows = await conn.execute(
        select(seen_t.c.feed, seen_t.c.seq).where(
            and_(seen_t.c.tenant == tenant, seen_t.c.user_id == user)
        )
    )
    return {str(feed): int(seq) for feed, seq in rows}


def _upsert(dialect: str, rows: list[dict[str, object]]) -> object:
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(seen_t).values(rows)
    # Two tabs marking at once: the higher mark wins, whatever the order.
    return ins.on_conflict_do_update(
        index_elements=[seen_t.c.tenant, seen_t.c.user_id, seen_t.c.feed],
        set_={
            "seq": case((ins.excluded.seq > seen_t.c.seq, ins.excluded.seq), else_=seen_t.c.seq),
            "updated_at": ins.excluded.updated_at,
        },
    )


async def mark(
    conn: AsyncConnection, tenant: str, user: str, wanted: Mapping[str, int], now: datetime
) -> tuple[Marked, Envelope | None]:
    """Apply a mark request in the caller's transaction: the person's marks after it
    (of the feeds they follow), the feeds ignored, and the envelope of the ``seen``
    message (None when nothing moved)."""
    followed = await feeds_of(conn, tenant, user)
    heads = {f: (await read_pos(conn, key_of(tenant, f))).seq for f in followed}
    stored = await read(conn, tenant, user)
    step = advance(stored, wanted, heads)
    if step.writes:
        rows: list[dict[str, object]] = [
            {"tenant": tenant, "user_id": user, "feed": f, "seq": s, "updated_at": now}
            for f, s in step.writes.items()
        ]
        await conn.execute(_upsert(conn.dialect.name, rows))  # type: ignore[call-overload]
        stored = await read(conn, tenant, user)
    marks = {f: stored.get(f, 0) for f in followed}
    envelope = None
    if step.writes:
        envelope = Envelope(user_key(tenant, user), SIDE_SEQ, 0, seen_message(marks))
    return Marked(marks, step.ignored), envelope


async def new_tasks(
    conn: AsyncConnection, tenant: str, marks: Mapping[str, int], feeds: Sequence[str]
) -> list[NewJSON]:
    """The tasks that entered each of ``feeds`` past its mark, with the seq they entered
    at (the latest, if several), newest first, at most ``NEW_LIMIT`` per feed. Tasks
    that left again are listed too: the panel marks only the cards it shows. Events
    pruned from the log are not listed (older than the retention: not new)."""
    out: list[NewJSON] = []
    for feed in feeds:
        last = func.max(event_t.c.seq).label("seq")
        rows = await conn.execute(
            select(event_t.c.task_id, last)
            .where(
                and_(
                    event_t.c.tenant == tenant,
                    event_t.c.feed == feed,
                    event_t.c.type == EventType.ADDED.value,
                    event_t.c.seq > marks.get(feed, 0),
                )
            )
            .group_by(event_t.c.task_id)
            .order_by(last.desc())
            .limit(NEW_LIMIT)
        )
        out += [{"feed": feed, "task_id": str(t), "seq": int(s)} for t, s in rows]
    return out
