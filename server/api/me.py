"""What a person reads: their tasks, their counter, the tasks of a connected record, and
how far they have seen their feeds (the one thing they write here)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import activities, seen
from server.activities import ActivityQuery, Sort
from server.api.common import JSON, body, parts, user
from server.api.tasks import path_id
from server.audiences import feeds_of
from server.auth import User
from server.counts import counts_json
from server.errors import BadRequest
from server.fields import whole_number
from server.ops import MarkSeen
from server.paging import encode_cursor
from server.views import pos_json
from server.wire import OPEN_STATUSES, Status, parse_body

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
    value = whole_number(raw, 200)
    if value is None or value < 1:
        raise BadRequest("limit must be a whole number from 1 to 200", code="bad_query")
    return value


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
    adds the queues and the people stood in for; ``q`` searches title, process and
    record; ``sort`` is ``newest`` (default), ``due`` or ``priority``."""
    me = user(request)
    q = request.query_params
    statuses = _statuses(q.get("status"))
    limit = _limit(q.get("limit"))
    search = ActivityQuery(activities.parse_q(q.get("q")), activities.parse_sort(q.get("sort")))
    page = activities.decode_page(search.sort, q.get("cursor"))
    feeds = await _feeds(request, me, q.get("feeds"))
    tasks = await parts(request).reads.list_tasks(
        me.tenant,
        feeds,
        statuses,
        limit=limit,
        cursor=page.after,
        search=search,
        offset=page.offset,
    )
    next_cursor = None
    if len(tasks) == limit and search.sort is Sort.NEWEST:
        next_cursor = encode_cursor(tasks[-1].updated_at, tasks[-1].id)
    elif len(tasks) == limit:
        next_cursor = activities.encode_page(search.sort, page.offset + limit)
    return JSON({"tasks": [t.to_json() for t in tasks], "next_cursor": next_cursor})


async def my_counter(request: Request) -> Response:
    """The own feed's ``count`` and ``seq`` (as the contract has it), every followed
    feed's position in ``feeds``, and ``total``: what the badge shows."""
    me = user(request)
    reads = parts(request).reads
    feeds = await reads.audience(me.tenant, me.id)
    positions = await reads.counters(me.tenant, feeds)
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
    behind the activities view's filters (``count`` in /me/counter is the badge), of
    the tasks matching ``q`` when it is given."""
    me = user(request)
    search = ActivityQuery(activities.parse_q(request.query_params.get("q")))
    return JSON(await parts(request).reads.status_counts(me.tenant, me.id, search))


async def my_seen(request: Request) -> Response:
    """``{"feeds": {"<feed>": seq}, "new": [{"feed", "task_id", "seq"}]}``: how far the
    person has seen each feed they follow (0: never), and the tasks that entered them
    since (``server.seen``)."""
    me = user(request)
    reads = parts(request).reads
    async with reads.engines.reader.connect() as conn:
        followed = await feeds_of(conn, me.tenant, me.id)
        stored = await seen.read(conn, me.tenant, me.id)
        marks = {f: stored.get(f, 0) for f in followed}
        new = await seen.new_tasks(conn, me.tenant, marks, followed)
    return JSON({"feeds": marks, "new": new})


async def mark_seen(request: Request) -> Response:
    """``{"feeds": {"<feed>": seq}}``: the person has seen these feeds up to these seqs.
    Marks only move forward; a seq past the feed's head counts as the head; a feed they
    do not follow is ignored (listed in ``ignored``). Every socket of the person (every
    tab, device and instance) gets a ``seen`` message when a mark moved."""
    me = user(request)
    req = parse_body(await body(request), seen.SeenRequest)
    marked = await parts(request).service.run(
        MarkSeen(me.id, tuple(req.feeds.items()), tenant=me.tenant)
    )
    return JSON({"feeds": marked.marks, "ignored": marked.ignored})


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
    Route("/api/v1/me/seen", my_seen, methods=["GET"]),
    Route("/api/v1/me/seen", mark_seen, methods=["PUT"]),
    Route("/api/v1/records/{entity}/{record_id}/tasks", record_tasks, methods=["GET"]),
]
