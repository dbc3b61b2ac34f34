"""Every read the HTTP API makes: tasks, counters, records' tasks, process instances,
definitions and statistics. Reads run on autocommit connections, one statement each
(the snapshot joins the feed row to its tasks so the two always agree)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypedDict

import orjson
from sqlalchemy import and_, false, func, or_, select, text
from sqlalchemy.exc import DBAPIError

from server import activities, instances, paging
from server.activities import ActivityQuery
from server.audiences import RoleJSON, Substitution, feeds_of
from server.audiences import role as read_role
from server.audiences import substitutions as read_substitutions
from server.changes import FeedPos
from server.clock import as_utc
from server.db import Engines, unavailable
from server.feedlog import Snapshot, read_pos, read_positions, read_snapshot
from server.feeds import ROLE, USER
from server.instances import InstanceDetailJSON, InstancePageJSON
from server.models import change_t, definition_t, instance_t, task_t
from server.transitions import TaskState, visible_to
from server.wire import Status, iso


class ChangeJSON(TypedDict):
    at: str | None
    op: str
    actor: str | None
    acting_as: str
    status: str
    owner: str | None
    role: str | None
    detail: dict[str, Any] | None


class DefinitionJSON(TypedDict):
    name: str
    disabled: bool


def in_feeds(feeds: Sequence[str]) -> Any:
    """SQL condition: a task that is in one of ``feeds`` (whatever its status)."""
    users = [f[len(USER) :] for f in feeds if f.startswith(USER)]
    roles = [f[len(ROLE) :] for f in feeds if f.startswith(ROLE)]
    parts = []
    if users:
        parts.append(task_t.c.owner.in_(users))
    if roles:
        parts.append(and_(task_t.c.owner.is_(None), task_t.c.role.in_(roles)))
    return or_(*parts) if parts else false()


class Reads:
    """Read access for the API. One per process; safe for concurrent use."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    def _conn(self) -> Any:
        return self.engines.reader.connect()

    # ---------------------------------------------------------------- tasks and feeds

    async def get_task(self, tenant: str, task_id: str) -> TaskState | None:
        async with self._conn() as conn:
            row = (
                await conn.execute(
                    select(task_t).where(and_(task_t.c.tenant == tenant, task_t.c.id == task_id))
                )
            ).first()
        return TaskState.from_row(row._mapping) if row else None

    async def visible_task(self, tenant: str, task_id: str, user: str | None) -> TaskState | None:
        """The task, if ``user`` may see it (``transitions.visible_to``; None: a producer),
        else None, exactly as for a task that does not exist."""
        task = await self.get_task(tenant, task_id)
        if task is None or user is None:
            return task
        audience = frozenset(await self.audience(tenant, user))
        return task if visible_to(task, audience) else None

    async def counter(self, key: str) -> FeedPos:
        """Where a feed stands (by key); ``FeedPos(0, 0)`` for a feed never seen."""
        async with self._conn() as conn:
            return await read_pos(conn, key)

    async def counters(self, tenant: str, feeds: Sequence[str]) -> dict[str, FeedPos]:
        """Where each of ``feeds`` stands (``counter`` for several, in one statement)."""
        async with self._conn() as conn:
            return await read_positions(conn, tenant, feeds)

    async def snapshot(self, key: str) -> Snapshot:
        """A feed's running tasks and the seq/count they correspond to."""
        async with self._conn() as conn:
            return await read_snapshot(conn, key)

    async def audience(self, tenant: str, user: str) -> list[str]:
        """The feeds ``user`` follows now."""
        async with self._conn() as conn:
            return await feeds_of(conn, tenant, user)

    async def list_tasks(
        self,
        tenant: str,
        feeds: Sequence[str],
        statuses: Sequence[str],
        *,
        limit: int = 50,
        cursor: tuple[datetime, str] | None = None,
        record: tuple[str, str] | None = None,
        search: ActivityQuery | None = None,
        offset: int = 0,
    ) -> list[TaskState]:
        """The tasks of ``feeds`` (``user:…`` owners, ``role:…`` unclaimed queue tasks),
        newest first, with keyset pagination on (updated_at, id); ``search`` filters and
        sorts them as the activities list asks (``server.activities``), ``offset`` pages
        the sorts a keyset cannot."""
        search = search or ActivityQuery()
        cond = [task_t.c.tenant == tenant, in_feeds(feeds), *activities.conditions(search)]
        if statuses:
            cond.append(task_t.c.status.in_(list(statuses)))
        if record is not None:
            cond += [task_t.c.record_entity == record[0], task_t.c.record_id == record[1]]
        if cursor is not None:
            cond.append(paging.after(cursor, task_t.c.updated_at, task_t.c.id))
        query = (
            select(task_t)
            .where(and_(*cond))
            .order_by(*activities.order(search.sort))
            .limit(limit)
            .offset(offset)
        )
        async with self._conn() as conn:
            return [TaskState.from_row(r._mapping) for r in await conn.execute(query)]

    async def status_counts(
        self, tenant: str, owner: str, search: ActivityQuery | None = None
    ) -> dict[str, int]:
        """How many of the owner's tasks (matching ``search``'s text) are in each status
        (every status listed)."""
        cond = [task_t.c.tenant == tenant, task_t.c.owner == owner]
        cond += activities.conditions(search or ActivityQuery())
        query = select(task_t.c.status, func.count()).where(and_(*cond)).group_by(task_t.c.status)
        counts = {s.value: 0 for s in Status}
        async with self._conn() as conn:
            for status, n in await conn.execute(query):
                counts[str(status)] = int(n)
        return counts

    async def running_count(self, tenant: str, feed: str) -> int:
        """Ground truth for checks: count(*) of running tasks in a feed (not its counter)."""
        async with self._conn() as conn:
            value = await conn.scalar(
                select(func.count())
                .select_from(task_t)
                .where(
                    and_(
                        task_t.c.tenant == tenant,
                        in_feeds([feed]),
                        task_t.c.status == Status.RUNNING.value,
                    )
                )
            )
        return int(value or 0)

    # ---------------------------------------------------------------- processes

    async def instance(self, tenant: str, instance_id: str) -> InstanceDetailJSON | None:
        """An instance with its steps in creation order, or None."""
        async with self._conn() as conn:
            return await instances.detail(conn, tenant, instance_id)

    async def instance_page(
        self, tenant: str, wanted: instances.InstanceFilter
    ) -> InstancePageJSON:
        """A page of instances, newest start first (``server.instances``)."""
        async with self._conn() as conn:
            return await instances.page(conn, tenant, wanted)

    async def definitions(self, tenant: str) -> list[DefinitionJSON]:
        """Every process name seen (in an instance or a definition), with its switch."""
        async with self._conn() as conn:
            names = {
                r.name: False
                for r in await conn.execute(
                    select(instance_t.c.name).where(instance_t.c.tenant == tenant).distinct()
                )
            }
            for r in await conn.execute(
                select(definition_t.c.name, definition_t.c.disabled).where(
                    definition_t.c.tenant == tenant
                )
            ):
                names[r.name] = bool(r.disabled)
        return [{"name": n, "disabled": d} for n, d in sorted(names.items())]

    async def stats_rows(
        self, tenant: str, name: str | None, since: datetime | None, until: datetime | None
    ) -> list[tuple[str, str, int | None]]:
        """(name, status, duration) of the instances started in [since, until)."""
        cond = [instance_t.c.tenant == tenant]
        if name is not None:
            cond.append(instance_t.c.name == name)
        if since is not None:
            cond.append(instance_t.c.started_at >= since)
        if until is not None:
            cond.append(instance_t.c.started_at < until)
        query = select(instance_t.c.name, instance_t.c.status, instance_t.c.duration_ms)
        if cond:
            query = query.where(and_(*cond))
        async with self._conn() as conn:
            return [(r.name, r.status, r.duration_ms) for r in await conn.execute(query)]

    async def history(self, tenant: str, task_id: str, limit: int = 1000) -> list[ChangeJSON]:
        """Every change of a task, oldest first (at most ``limit``)."""
        query = (
            select(change_t)
            .where(and_(change_t.c.tenant == tenant, change_t.c.task_id == task_id))
            .order_by(change_t.c.id)
            .limit(limit)
        )
        async with self._conn() as conn:
            rows = (await conn.execute(query)).all()
        return [
            {
                "at": iso(as_utc(r.at)),
                "op": r.op,
                "actor": r.actor,
                "acting_as": r.acting_as,
                "status": r.status,
                "owner": r.owner,
                "role": r.role,
                "detail": orjson.loads(r.detail) if r.detail else None,
            }
            for r in rows
        ]

    # ---------------------------------------------------------------- audiences

    async def role(self, tenant: str, role_id: str) -> RoleJSON | None:
        async with self._conn() as conn:
            return await read_role(conn, tenant, role_id)

    async def substitutions(self, tenant: str, user: str | None) -> list[Substitution]:
        async with self._conn() as conn:
            return await read_substitutions(conn, tenant, user)

    # ---------------------------------------------------------------- health

    async def ping(self) -> None:
        """Raises ``Unavailable`` unless the database answers."""
        try:
            async with self._conn() as conn:
                await conn.execute(text("SELECT 1"))
        except (DBAPIError, OSError) as exc:
            raise unavailable(exc) from None
