"""What a person reads: their tasks, their counter, the tasks of a connected record."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, parts, user
from server.api.tasks import path_id
from server.errors import BadRequest
from server.paging import decode_cursor, encode_cursor
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


async def my_tasks(request: Request) -> Response:
    """``?status=running`` (default), a comma list, or ``all``; newest change first,
    paginated with ``limit`` and the ``next_cursor`` of the previous page."""
    me = user(request)
    q = request.query_params
    statuses = _statuses(q.get("status"))
    limit = _limit(q.get("limit"))
    tasks = await parts(request).reads.list_tasks(
        me.id, statuses, limit=limit, cursor=decode_cursor(q.get("cursor"))
    )
    next_cursor = encode_cursor(tasks[-1].updated_at, tasks[-1].id) if len(tasks) == limit else None
    return JSON({"tasks": [t.to_json() for t in tasks], "next_cursor": next_cursor})


async def my_counter(request: Request) -> Response:
    me = user(request)
    pos = await parts(request).reads.counter(me.id)
    return JSON({"count": pos.count, "seq": pos.seq})


async def my_counts(request: Request) -> Response:
    """``{"running": n, "postponed": n, "completed": n, "canceled": n}``: the totals
    behind the activities view's filters (``count`` in /me/counter is the badge)."""
    me = user(request)
    return JSON(await parts(request).reads.status_counts(me.id))


async def record_tasks(request: Request) -> Response:
    """The caller's open (running or postponed) tasks connected to one record: what the
    record page's Process button offers."""
    me = user(request)
    entity = path_id(request, "entity", "record")
    record_id = path_id(request, "record_id", "record")
    tasks = await parts(request).reads.list_tasks(
        me.id, [s.value for s in OPEN_STATUSES], limit=200, record=(entity, record_id)
    )
    return JSON({"entity": entity, "id": record_id, "tasks": [t.to_json() for t in tasks]})


routes = [
    Route("/api/v1/me/tasks", my_tasks, methods=["GET"]),
    Route("/api/v1/me/counter", my_counter, methods=["GET"]),
    Route("/api/v1/me/counts", my_counts, methods=["GET"]),
    Route("/api/v1/records/{entity}/{record_id}/tasks", record_tasks, methods=["GET"]),
]
