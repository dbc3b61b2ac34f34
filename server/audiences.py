"""Who follows which feed: role memberships and substitutions, in SQL.

``feeds_of`` answers "which feeds does this person follow now" (own, their roles'
queues, the people they stand in for), for the hub's joins and for the write path's
access checks. The writes here (``set_members``, ``add_substitution``,
``end_substitution``, ``move_substitutions``) run inside the caller's transaction and
append an ``audience_change`` row for every person whose feeds changed; every instance
polls that log (``Audiences``) and moves its open sockets (``Hub.refollow``). The log,
not the broker, carries these changes, so one lost publish cannot leave a socket
following the wrong feeds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import (
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from server import direct
from server.clock import as_utc
from server.db import DATABASE_ERRORS, Engines
from server.errors import Conflict, NotFound
from server.feeds import role_feed, user_feed
from server.models import audience_t, member_t, role_t, substitution_t
from server.polling import Poller
from server.wire import iso

PENDING, ACTIVE, ENDED = "pending", "active", "ended"
POLL_S = 1.0  # how often every instance reads the audience log
KEEP = timedelta(hours=1)  # audience log rows older than this are pruned


class RoleJSON(TypedDict):
    id: str
    members: list[str]


class SubstitutionJSON(TypedDict):
    id: str
    user: str
    substitute: str
    starts_at: str | None
    ends_at: str | None
    state: str


@dataclass(frozen=True, slots=True)
class Substitution:
    tenant: str
    id: str
    user: str
    substitute: str
    starts_at: datetime
    ends_at: datetime
    state: str

    @classmethod
    def from_row(cls, m: Any) -> Substitution:
        return cls(
            m["tenant"],
            m["id"],
            m["user_id"],
            m["substitute"],
            as_utc(m["starts_at"]),
            as_utc(m["ends_at"]),
            m["state"],
        )

    def to_json(self) -> SubstitutionJSON:
        return {
            "id": self.id,
            "user": self.user,
            "substitute": self.substitute,
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "state": self.state,
        }


# ---------------------------------------------------------------- reads


async def feeds_of(conn: AsyncConnection, tenant: str, user: str) -> list[str]:
    """The feeds ``user`` follows now: own first, then roles (sorted), then the people
    they stand in for (sorted). Substitutions count while ``active`` (the clock moves
    them at their times). One statement: every connect asks this."""
    return (await feeds_of_many(conn, tenant, [user]))[user]


def _audience_query() -> Any:
    # Built once: constructing the union (not running it) was most of a connect's share
    # of this read in the profile. ``users`` expands to the IN list at execution.
    users: Any = bindparam("users", expanding=True)
    return union_all(
        select(
            member_t.c.user_id.label("who"),
            literal("role").label("kind"),
            member_t.c.role.label("name"),
        ).where(and_(member_t.c.tenant == bindparam("tenant"), member_t.c.user_id.in_(users))),
        select(substitution_t.c.substitute, literal("user"), substitution_t.c.user_id).where(
            and_(
                substitution_t.c.tenant == bindparam("tenant"),
                substitution_t.c.substitute.in_(users),
                substitution_t.c.state == ACTIVE,
            )
        ),
    )


_AUDIENCE = _audience_query()


async def feeds_of_many(
    conn: AsyncConnection, tenant: str, users: Sequence[str]
) -> dict[str, list[str]]:
    """``feeds_of`` for several people of one tenant, in one statement (the write path
    asks it for everyone acting or claiming in a transaction)."""
    wanted = sorted(set(users))
    roles: dict[str, set[str]] = {u: set() for u in wanted}
    absent: dict[str, set[str]] = {u: set() for u in wanted}
    for who, kind, name in await direct.execute(
        conn, _AUDIENCE, {"tenant": tenant, "users": wanted}
    ):
        (roles if kind == "role" else absent)[str(who)].add(str(name))
    return {
        u: [
            user_feed(u),
            *(role_feed(r) for r in sorted(roles[u])),
            *(user_feed(a) for a in sorted(absent[u] - {u})),
        ]
        for u in wanted
    }


async def role(conn: AsyncConnection, tenant: str, role_id: str) -> RoleJSON | None:
    exists = await conn.scalar(
        select(role_t.c.id).where(and_(role_t.c.tenant == tenant, role_t.c.id == role_id))
    )
    if exists is None:
        return None
    rows = await conn.execute(
        select(member_t.c.user_id)
        .where(and_(member_t.c.tenant == tenant, member_t.c.role == role_id))
        .order_by(member_t.c.user_id)
    )
    return {"id": role_id, "members": [str(r[0]) for r in rows]}


async def role_exists(conn: AsyncConnection, tenant: str, role_id: str) -> bool:
    value = await conn.scalar(
        select(role_t.c.id).where(and_(role_t.c.tenant == tenant, role_t.c.id == role_id))
    )
    return value is not None


async def substitutions(conn: AsyncConnection, tenant: str, user: str | None) -> list[Substitution]:
    """A tenant's substitutions not yet ended (of ``user``, as absent or as substitute,
    when given), by start."""
    cond = [substitution_t.c.tenant == tenant, substitution_t.c.state != ENDED]
    if user is not None:
        cond.append(or_(substitution_t.c.user_id == user, substitution_t.c.substitute == user))
    rows = await conn.execute(
        select(substitution_t)
        .where(and_(*cond))
        .order_by(substitution_t.c.starts_at, substitution_t.c.id)
        .limit(1000)
    )
    return [Substitution.from_row(r._mapping) for r in rows]


# ---------------------------------------------------------------- writes (in a transaction)


async def _changed(conn: AsyncConnection, tenant: str, users: Iterable[str], now: datetime) -> None:
    rows = [{"tenant": tenant, "user_id": u, "at": now} for u in sorted(set(users))]
    if rows:
        await conn.execute(insert(audience_t), rows)


async def set_members(
    conn: AsyncConnection, tenant: str, role_id: str, members: Sequence[str], now: datetime
) -> tuple[RoleJSON, bool]:
    """Make ``members`` the role's members; returns the role and whether it was new."""
    locked = select(role_t.c.id).where(and_(role_t.c.tenant == tenant, role_t.c.id == role_id))
    if conn.dialect.name == "postgresql":
        locked = locked.with_for_update()
    created = await conn.scalar(locked) is None
    if created:
        await conn.execute(
            insert(role_t).values(tenant=tenant, id=role_id, created_at=now, updated_at=now)
        )
    else:
        await conn.execute(
            update(role_t)
            .where(and_(role_t.c.tenant == tenant, role_t.c.id == role_id))
            .values(updated_at=now)
        )
    wanted = set(members)
    current = {
        str(r[0])
        for r in await conn.execute(
            select(member_t.c.user_id).where(
                and_(member_t.c.tenant == tenant, member_t.c.role == role_id)
            )
        )
    }
    gone, new = current - wanted, wanted - current
    if gone:
        await conn.execute(
            delete(member_t).where(
                and_(
                    member_t.c.tenant == tenant,
                    member_t.c.role == role_id,
                    member_t.c.user_id.in_(sorted(gone)),
                )
            )
        )
    if new:
        await conn.execute(
            insert(member_t),
            [{"tenant": tenant, "role": role_id, "user_id": u} for u in sorted(new)],
        )
    await _changed(conn, tenant, gone | new, now)
    return {"id": role_id, "members": sorted(wanted)}, created


async def add_substitution(
    conn: AsyncConnection,
    tenant: str,
    sub_id: str,
    user: str,
    substitute: str,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
) -> tuple[Substitution, bool]:
    """Create a substitution (or recognise an identical repeat); one whose period has
    begun is in force at once. Returns it and whether it was created."""
    row = (
        await conn.execute(
            select(substitution_t).where(
                and_(substitution_t.c.tenant == tenant, substitution_t.c.id == sub_id)
            )
        )
    ).first()
    if row is not None:
        old = Substitution.from_row(row._mapping)
        if (old.user, old.substitute, old.starts_at, old.ends_at) == (
            user,
            substitute,
            starts_at,
            ends_at,
        ):
            return old, False
        raise Conflict(
            f"substitution {sub_id!r} already exists with other values",
            code="substitution_id_conflict",
        )
    state = ENDED if ends_at <= now else ACTIVE if starts_at <= now else PENDING
    await conn.execute(
        insert(substitution_t).values(
            tenant=tenant,
            id=sub_id,
            user_id=user,
            substitute=substitute,
            starts_at=starts_at,
            ends_at=ends_at,
            state=state,
            created_at=now,
        )
    )
    if state == ACTIVE:
        await _changed(conn, tenant, [substitute], now)
    return Substitution(tenant, sub_id, user, substitute, starts_at, ends_at, state), True


async def end_substitution(
    conn: AsyncConnection, tenant: str, sub_id: str, now: datetime
) -> Substitution:
    """Delete a substitution; the substitute stops following at once if it was in force.

    The row is locked first (PostgreSQL): the clock may be starting it right now, and
    its state must be read after that commits, or the end would go unlogged and the
    substitute's sockets would keep following the absent person's feed."""
    query = select(substitution_t).where(
        and_(substitution_t.c.tenant == tenant, substitution_t.c.id == sub_id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"substitution {sub_id[:50]!r} not found", code="substitution_not_found")
    sub = Substitution.from_row(row._mapping)
    await conn.execute(
        delete(substitution_t).where(
            and_(substitution_t.c.tenant == tenant, substitution_t.c.id == sub_id)
        )
    )
    if sub.state == ACTIVE:
        await _changed(conn, tenant, [sub.substitute], now)
    return sub


async def move_substitutions(conn: AsyncConnection, now: datetime, limit: int) -> int:
    """Start the pending substitutions whose time has come and end the active ones whose
    time is over; each move is claimed once (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
    the single writer on SQLite), so with several instances it happens exactly once."""
    query = (
        select(substitution_t)
        .where(
            or_(
                and_(substitution_t.c.state == PENDING, substitution_t.c.starts_at <= now),
                and_(substitution_t.c.state == ACTIVE, substitution_t.c.ends_at <= now),
                and_(substitution_t.c.state == PENDING, substitution_t.c.ends_at <= now),
            )
        )
        .order_by(substitution_t.c.starts_at, substitution_t.c.tenant, substitution_t.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    subs = [Substitution.from_row(r._mapping) for r in await conn.execute(query)]
    for sub in subs:
        state = ENDED if sub.ends_at <= now else ACTIVE
        await conn.execute(
            update(substitution_t)
            .where(and_(substitution_t.c.tenant == sub.tenant, substitution_t.c.id == sub.id))
            .values(state=state)
        )
        if state == ACTIVE or sub.state == ACTIVE:
            await _changed(conn, sub.tenant, [sub.substitute], now)
    return len(subs)


# ---------------------------------------------------------------- the poller


Refollow = Callable[[str, str], None]


class Audiences:
    """Polls the audience log every ``POLL_S`` and calls ``refollow(tenant, user)`` for
    every person named in new rows.

    Rows are read by id, not by time, so clocks that differ between instances do not
    matter. Ids are given out at insert and a transaction may commit after a later one,
    so every poll reads again the last ``WINDOW`` ids and skips the rows it has seen (a
    row seen twice would be harmless anyway: refollow is idempotent)."""

    WINDOW = 1000

    def __init__(self, engines: Engines, refollow: Refollow, *, poll_s: float = POLL_S) -> None:
        self.engines = engines
        self.refollow = refollow
        self.poll_s = poll_s
        self._seen: set[int] = set()
        self._top: int | None = None  # the highest id seen (None: not read yet)
        self._poller = Poller("audiences", self.poll, poll_s)

    async def start(self) -> None:
        """Note where the log stands (a database away now is tried at the next poll),
        then poll it every ``poll_s`` (owned here)."""
        with contextlib.suppress(*DATABASE_ERRORS):
            await self.poll()
        self._poller.start()

    async def stop(self) -> None:
        await self._poller.stop()

    async def poll(self) -> int:
        """Read new rows once; returns how many people were told to refollow."""
        first = self._top is None
        async with self.engines.reader.connect() as conn:
            if self._top is None:
                self._top = int(await conn.scalar(select(func.max(audience_t.c.id))) or 0)
            floor = self._top - self.WINDOW
            rows = (
                await conn.execute(
                    select(audience_t.c.id, audience_t.c.tenant, audience_t.c.user_id)
                    .where(audience_t.c.id > floor)
                    .order_by(audience_t.c.id)
                )
            ).all()
        people: set[tuple[str, str]] = set()
        for row_id, tenant, user in rows:
            if row_id in self._seen:
                continue
            self._seen.add(row_id)
            self._top = max(self._top, int(row_id))
            people.add((str(tenant), str(user)))
        floor = self._top - self.WINDOW
        self._seen = {i for i in self._seen if i > floor}
        if first:
            # What was logged before this instance started concerns no socket of its:
            # every join reads the person's feeds afresh.
            return 0
        for tenant, user in sorted(people):
            self.refollow(tenant, user)
        return len(people)


async def prune(conn: AsyncConnection, now: datetime) -> int:
    result = await conn.execute(delete(audience_t).where(audience_t.c.at < now - KEEP))
    return int(result.rowcount or 0)
