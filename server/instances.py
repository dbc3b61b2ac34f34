"""The process view's reads: pages of instances (filtered, newest start first) with a
summary of their steps, and one instance's steps with owners and durations.

Everything here takes a connection and a tenant and runs on the reader (``server.reads``
hands them over); nothing here writes. The filters a page was asked for are a value
(``InstanceFilter``) that the API builds after validating the query string.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from server import paging
from server.clock import as_utc
from server.models import instance_t, task_t
from server.processes import Instance, InstanceJSON
from server.wire import OPEN_STATUSES, iso

PAGE = 50  # instances per page unless ``limit`` says otherwise
MAX_PAGE = 200
_OPEN = {s.value for s in OPEN_STATUSES}


class StepCountsJSON(TypedDict):
    total: int
    open: int


class InstanceRowJSON(InstanceJSON):
    """An instance in a list: its steps counted, and who holds its open ones."""

    step_counts: StepCountsJSON
    open_owners: list[str]  # people holding an open step
    open_roles: list[str]  # queues with an open step nobody claimed


class InstancePageJSON(TypedDict):
    instances: list[InstanceRowJSON]
    next_cursor: str | None


class StepJSON(TypedDict):
    id: str
    owner: str | None
    role: str | None
    title: str
    kind: str
    status: str
    created_at: str | None
    updated_at: str | None
    ended_at: str | None
    postponed_until: str | None
    duration_ms: int | None  # created to ended; None while open
    acted_by: str | None
    completed_by: str | None
    outcome: str | None


class InstanceDetailJSON(InstanceJSON):
    steps: list[StepJSON]


@dataclass(frozen=True, slots=True)
class InstanceFilter:
    """What a page of instances is narrowed to (every field optional)."""

    statuses: tuple[str, ...] = ()
    name: str | None = None
    since: datetime | None = None  # started at or after
    until: datetime | None = None  # started before
    limit: int = PAGE
    cursor: paging.Cursor | None = None


async def page(conn: AsyncConnection, tenant: str, f: InstanceFilter) -> InstancePageJSON:
    """One page of ``tenant``'s instances, newest start first (keyset on start time and
    id, so a page never repeats or skips a row while instances start meanwhile)."""
    cond: list[Any] = [instance_t.c.tenant == tenant]
    if f.statuses:
        cond.append(instance_t.c.status.in_(list(f.statuses)))
    if f.name is not None:
        cond.append(instance_t.c.name == f.name)
    if f.since is not None:
        cond.append(instance_t.c.started_at >= f.since)
    if f.until is not None:
        cond.append(instance_t.c.started_at < f.until)
    if f.cursor is not None:
        cond.append(paging.after(f.cursor, instance_t.c.started_at, instance_t.c.id))
    query = (
        select(instance_t)
        .where(and_(*cond))
        .order_by(*paging.newest_first(instance_t.c.started_at, instance_t.c.id))
        .limit(f.limit)
    )
    found = [Instance.from_row(r._mapping) for r in await conn.execute(query)]
    steps = await _step_summary(conn, tenant, [i.id for i in found])
    rows = [_row(i, steps.get(i.id)) for i in found]
    last = found[-1] if len(found) == f.limit else None
    cursor = paging.encode_cursor(last.started_at, last.id) if last else None
    return {"instances": rows, "next_cursor": cursor}


@dataclass
class _Steps:
    total: int = 0
    open: int = 0
    owners: set[str] = field(default_factory=set)
    roles: set[str] = field(default_factory=set)


async def _step_summary(
    conn: AsyncConnection, tenant: str, ids: Sequence[str]
) -> dict[str, _Steps]:
    """Per instance: steps counted, and the holders of open ones (one grouped query)."""
    if not ids:
        return {}
    query = (
        select(
            task_t.c.process_instance_id,
            task_t.c.status,
            task_t.c.owner,
            task_t.c.role,
            func.count().label("n"),
        )
        .where(and_(task_t.c.tenant == tenant, task_t.c.process_instance_id.in_(list(ids))))
        .group_by(task_t.c.process_instance_id, task_t.c.status, task_t.c.owner, task_t.c.role)
    )
    out: dict[str, _Steps] = {}
    for r in await conn.execute(query):
        s = out.setdefault(r.process_instance_id, _Steps())
        s.total += int(r.n)
        if r.status in _OPEN:
            s.open += int(r.n)
            if r.owner is not None:
                s.owners.add(r.owner)
            elif r.role is not None:
                s.roles.add(r.role)
    return out


def _row(inst: Instance, steps: _Steps | None) -> InstanceRowJSON:
    s = steps or _Steps()
    return {
        **inst.to_json(),
        "step_counts": {"total": s.total, "open": s.open},
        "open_owners": sorted(s.owners),
        "open_roles": sorted(s.roles),
    }


async def detail(conn: AsyncConnection, tenant: str, instance_id: str) -> InstanceDetailJSON | None:
    """An instance with its steps in creation order, or None (also for another tenant's)."""
    row = (
        await conn.execute(
            select(instance_t).where(
                and_(instance_t.c.tenant == tenant, instance_t.c.id == instance_id)
            )
        )
    ).first()
    if row is None:
        return None
    rows = await conn.execute(
        select(task_t)
        .where(and_(task_t.c.tenant == tenant, task_t.c.process_instance_id == instance_id))
        .order_by(task_t.c.created_at, task_t.c.id)
    )
    steps = [step(r._mapping) for r in rows]
    return {**Instance.from_row(row._mapping).to_json(), "steps": steps}


def step(m: Mapping[Any, Any]) -> StepJSON:
    created, ended = as_utc(m["created_at"]), as_utc(m["ended_at"])
    duration = None
    if created is not None and ended is not None:
        duration = max(0, int((ended - created).total_seconds() * 1000))
    return {
        "id": m["id"],
        "owner": m["owner"],
        "role": m["role"],
        "title": m["title"],
        "kind": m["kind"],
        "status": m["status"],
        "created_at": iso(created),
        "updated_at": iso(as_utc(m["updated_at"])),
        "ended_at": iso(ended),
        "postponed_until": iso(as_utc(m["postponed_until"])),
        "duration_ms": duration,
        "acted_by": m["acted_by"],
        "completed_by": m["completed_by"],
        "outcome": m["outcome"],
    }
