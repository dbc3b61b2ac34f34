"""What a person reads: their tasks, their counter, the tasks of a connected record."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, parts, user
from server.api.tasks import path_id
from server.auth import User
from server.counts import counts_json
from server.errors import BadRequest
from server.feeds import key_of
from server.paging import decode_cursor, encode_cursor
from server.views import pos_json
from server.wire import OPEN_STATUSES, Status

_ALL = [s.value for s in Status]


def _statuses(raw: str | None) -> list[str]:
    if raw is None or raw == "":
        return [Status.RUNNING.value]
    if raw == "all":
        return _ALL
    wanted = [s.strip() for s in raw.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in _ALL]
    if unknown or not wanted:
        raise BadRequest(
            f"status must be 'all' or a comma-separated list of {', '.join(_ALL)}",
            code="bad_query",
        )
    return wanted


def _limit(raw: str | None) -> int:
    if raw is None:
        return 50
    if not raw.isdigit() or not 1 <= int(raw) <= 200:
        raise BadRequest("limit must be a whole number from 1 to 200", code="bad_query")
    return int(raw)


async def _feeds(request: Request, me: User, raw: str | None) -> list[str]:
    """``own`` (default): the person's own tasks; ``all``: every feed they follow (their
    roles' queues and the people they stand in for too)."""
    if raw is None or raw == "" or raw == "own":
        return [me.feed]
    if raw == "all":
        return await parts(request).reads.audience(me.tenant, me.id)
    raise BadRequest("feeds must be 'own' or 'all'", code="bad_query")


async def my_tasks(request: Request) -> Response:
    """``?status=running`` (default), a comma list, or ``all``; newest change first,
    paginated with ``limit`` and the ``next_cursor`` of the previous page; ``feeds=all``
    adds the queues and the people stood in for."""
    me = user(request)
    q = request.query_params
    statuses = _statuses(q.get("status"))
    limit = _limit(q.get("limit"))
    feeds = await _feeds(request, me, q.get("feeds"))
    tasks = await parts(request).reads.list_tasks(
        me.tenant, feeds, statuses, limit=limit, cursor=decode_cursor(q.get("cursor"))
    )
    next_cursor = encode_cursor(tasks[-1].updated_at, tasks[-1].id) if len(tasks) == limit else None
    return JSON({"tasks": [t.to_json() for t in tasks], "next_cursor": next_cursor})


async def my_counter(request: Request) -> Response:
    """The own feed's ``count`` and ``seq`` (as the contract has it), every followed
    feed's position in ``feeds``, and ``total``: what the badge shows."""
    me = user(request)
    reads = parts(request).reads
    feeds = await reads.audience(me.tenant, me.id)
    positions = {f: await reads.counter(key_of(me.tenant, f)) for f in feeds}
    own = positions[me.feed]
    return JSON(
        {
            "count": own.count,
            "counts": counts_json(own.count, own.postponed),
            "seq": own.seq,
            "total": sum(p.count for p in positions.values()),
            "feeds": {f: pos_json(p.seq, p.count, p.postponed) for f, p in positions.items()},
        }
    )


async def my_counts(request: Request) -> Response:
    """``{"running": n, "postponed": n, "completed": n, "canceled": n}``: the totals
    behind the activities view's filters (``count`` in /me/counter is the badge)."""
    me = user(request)
    return JSON(await parts(request).reads.status_counts(me.tenant, me.id))


async def record_tasks(request: Request) -> Response:
    """The caller's open (running or postponed) tasks connected to one record, in every
    feed they follow (their own, their queues, the people they stand in for): what the
    record page's Process button offers."""
    me = user(request)
    entity = path_id(request, "entity", "record")
    record_id = path_id(request, "record_id", "record")
    reads = parts(request).reads
    feeds = await reads.audience(me.tenant, me.id)
    tasks = await reads.list_tasks(
        me.tenant, feeds, [s.value for s in OPEN_STATUSES], limit=200, record=(entity, record_id)
    )
    return JSON({"entity": entity, "id": record_id, "tasks": [t.to_json() for t in tasks]})


routes = [
    Route("/api/v1/me/tasks", my_tasks, methods=["GET"]),
    Route("/api/v1/me/counter", my_counter, methods=["GET"]),
    Route("/api/v1/me/counts", my_counts, methods=["GET"]),
    Route("/api/v1/records/{entity}/{record_id}/tasks", record_tasks, methods=["GET"]),
]
