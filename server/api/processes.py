"""Process endpoints: instances, their end, definitions (enable/disable), statistics,
and the "open the right page" redirect for a task.

Producers may call all of them. A person whose token carries the ``process-admin`` role
may call the reads (list, one instance, statistics, definitions), cancel an instance and
switch a definition, in their own tenant (``api.common.process_admin``); anyone else
with a user token gets 403 ``process_admin_required``, whatever the path names."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.api.common import JSON, body, parts, process_admin, producer
from server.api.tasks import path_id
from server.auth import bearer, producer_tenant
from server.errors import BadRequest, NotFound
from server.fields import Id, Text, is_name, query_instant
from server.instances import MAX_PAGE, PAGE, InstanceFilter
from server.ops import EndInstance, InstanceStatus, SetDisabled, SetExpectMore, StartInstance
from server.paging import decode_cursor
from server.stats import overall, summarize
from server.wire import FINAL_STATUSES, _Strict, parse_body

log = logging.getLogger("taskbell.processes")

INSTANCE_STATUSES = tuple(s.value for s in InstanceStatus)


class InstanceCreate(_Strict):
    id: Id
    name: Text
    expect_more: bool = False


class InstancePatch(_Strict):
    expect_more: bool


class ProcessEnd(_Strict):
    reason: Annotated[str, Field(max_length=500)] | None = None


async def create_instance(request: Request) -> Response:
    tenant = producer(request)
    req = parse_body(await body(request), InstanceCreate)
    op = StartInstance(req.id, req.name, req.expect_more, tenant)
    started = await parts(request).service.run(op)
    return JSON(started.instance.to_json(), status_code=201 if started.created else 200)


async def get_instance(request: Request) -> Response:
    tenant = process_admin(request).tenant
    instance_id = path_id(request, "instance_id", "process")
    found = await parts(request).reads.instance(tenant, instance_id)
    if found is None:
        raise NotFound(f"process instance {instance_id!r} not found", code="process_not_found")
    return JSON(found)


async def patch_instance(request: Request) -> Response:
    tenant = producer(request)
    instance_id = path_id(request, "instance_id", "process")
    req = parse_body(await body(request), InstancePatch)
    op = SetExpectMore(instance_id, req.expect_more, tenant)
    inst = await parts(request).service.run(op)
    return JSON(inst.to_json())


def _ender(status: InstanceStatus) -> Any:
    """``/complete`` and ``/fail`` are the engine's; ``/cancel`` a process admin may call too."""

    async def endpoint(request: Request) -> Response:
        if status is InstanceStatus.CANCELED:
            caller = process_admin(request)
            tenant, who = caller.tenant, caller.user
        else:
            tenant, who = producer(request), None
        instance_id = path_id(request, "instance_id", "process")
        raw = await body(request)
        if raw.strip():
            parse_body(raw, ProcessEnd)
        ended = await parts(request).service.run(EndInstance(instance_id, status, tenant))
        if who is not None and ended.canceled_steps:
            # The steps' own history says "producer"; the log says which person it was.
            log.info("process admin %s canceled instance %s", who, instance_id)
        canceled = ended.canceled_steps
        return JSON({**ended.instance.to_json(), "canceled_steps": canceled, "canceled": canceled})

    endpoint.__name__ = f"{status.value}_instance"
    return endpoint


async def stats(request: Request) -> Response:
    """Per process and overall: instances by status, and durations of completed ones
    only. ``?name=``, ``?from=`` and ``?to=`` (ISO-8601, on the start time) narrow it."""
    tenant = process_admin(request).tenant
    q = request.query_params  # lenient, as it always was: engines already call it
    since, until = _time(q.get("from"), "from"), _time(q.get("to"), "to")
    rows = await parts(request).reads.stats_rows(tenant, q.get("name") or None, since, until)
    return JSON({"processes": summarize(rows), "overall": overall(rows)})


async def list_instances(request: Request) -> Response:
    """A page of instances, newest start first: ``?status=`` (comma list, or ``all``),
    ``?definition=``, ``?from=``/``?to=`` on the start time, ``?limit=``, ``?cursor=``."""
    tenant = process_admin(request).tenant
    q = _query(request, {"status", "definition", "from", "to", "limit", "cursor"})
    wanted = InstanceFilter(
        statuses=_statuses(q.get("status")),
        name=_name(q.get("definition"), "definition"),
        since=_time(q.get("from"), "from"),
        until=_time(q.get("to"), "to"),  # before ``from``: an empty page, as in /stats
        limit=_limit(q.get("limit")),
        cursor=decode_cursor(q.get("cursor")),
    )
    return JSON(await parts(request).reads.instance_page(tenant, wanted))


def _query(request: Request, known: set[str]) -> dict[str, str]:
    """The query string as one value per name; a name not in ``known``, or one given
    twice, is 400 ``bad_query`` (a typo must not widen a list silently)."""
    items = request.query_params.multi_items()
    names = [k for k, _ in items]
    unknown = sorted(set(names) - known)
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0][:50]!r}", code="bad_query")
    twice = sorted({k for k in names if names.count(k) > 1})
    if twice:
        raise BadRequest(f"query parameter {twice[0]!r} given twice", code="bad_query")
    return dict(items)


def _time(raw: str | None, name: str) -> datetime | None:
    return query_instant(raw, name) if raw else None


def _name(raw: str | None, what: str) -> str | None:
    if raw is None or raw == "":
        return None
    if not is_name(raw):
        raise BadRequest(f"'{what}' is not a process name", code="bad_query")
    return raw


def _statuses(raw: str | None) -> tuple[str, ...]:
    if raw is None or raw in ("", "all"):
        return ()
    wanted = tuple(dict.fromkeys(s.strip() for s in raw.split(",")))
    if not all(s in INSTANCE_STATUSES for s in wanted):
        raise BadRequest(
            f"status must be 'all' or a comma-separated list of {', '.join(INSTANCE_STATUSES)}",
            code="bad_query",
        )
    return wanted


def _limit(raw: str | None) -> int:
    if raw is None:
        return PAGE
    # Length first: int() of thousands of digits raises (and is slow) before any range test.
    if not (len(raw) <= 3 and raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}", code="bad_query")
    return int(raw)


async def list_definitions(request: Request) -> Response:
    tenant = process_admin(request).tenant
    return JSON({"processes": await parts(request).reads.definitions(tenant)})


def _toggle(disabled: bool) -> Any:
    async def endpoint(request: Request) -> Response:
        tenant = process_admin(request).tenant
        name = request.path_params["name"]
        if not is_name(name):
            raise NotFound("no such process", code="process_not_found")
        await parts(request).service.run(SetDisabled(name, disabled, tenant))
        return JSON({"name": name, "disabled": disabled})

    endpoint.__name__ = "disable" if disabled else "enable"
    return endpoint


async def open_task(request: Request) -> Response:
    """Redirect to the page for a task: its own page while it is open, the default page
    of its record (or the configured default) once it is completed or canceled.

    A browser following a link cannot send a header, so the user token may come as
    ``?token=``; only the owner's (or a producer's) request is answered, others get 404.
    """
    p = parts(request)
    raw = request.query_params.get("token") or bearer(request.headers.get("authorization"))
    tenant = producer_tenant(p.settings, raw)
    user: str | None = None
    if tenant is None:
        who = p.authenticate(raw)
        tenant, user = who.tenant, who.id
    tid = path_id(request)
    task = await p.reads.visible_task(tenant, tid, user)
    if task is None:
        raise NotFound(f"task {tid!r} not found", code="task_not_found")
    if task.status not in FINAL_STATUSES and task.url:
        target = task.url
    elif task.record_entity and task.record_id:
        target = p.settings.record_url.format(entity=task.record_entity, id=task.record_id)
    else:
        target = p.settings.default_task_url
    return RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})


routes = [
    Route("/api/v1/processes", create_instance, methods=["POST"]),
    Route("/api/v1/processes", list_instances, methods=["GET"]),
    Route("/api/v1/processes/stats", stats, methods=["GET"]),
    Route("/api/v1/processes/{instance_id}", get_instance, methods=["GET"]),
    Route("/api/v1/processes/{instance_id}", patch_instance, methods=["PATCH"]),
    Route(
        "/api/v1/processes/{instance_id}/complete",
        _ender(InstanceStatus.COMPLETED),
        methods=["POST"],
    ),
    Route("/api/v1/processes/{instance_id}/fail", _ender(InstanceStatus.ERROR), methods=["POST"]),
    Route(
        "/api/v1/processes/{instance_id}/cancel", _ender(InstanceStatus.CANCELED), methods=["POST"]
    ),
    Route("/api/v1/process-definitions", list_definitions, methods=["GET"]),
    Route("/api/v1/process-definitions/{name}/disable", _toggle(True), methods=["POST"]),
    Route("/api/v1/process-definitions/{name}/enable", _toggle(False), methods=["POST"]),
    Route("/api/v1/tasks/{task_id}/open", open_task, methods=["GET"]),
]
