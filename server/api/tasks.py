"""Task endpoints: producers create and change tasks; owners act on their own."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, actor, body, parts, producer
from server.changes import Op, OpKind
from server.errors import ApiError, NotFound, Unprocessable
from server.transitions import Outcome
from server.wire import (
    Batch,
    CreateOp,
    FinishOp,
    Id,
    Postpone,
    PostponeOp,
    TaskCreate,
    TaskPatch,
    UpdateOp,
    parse_body,
)

_id: TypeAdapter[str] = TypeAdapter(Id)


def path_id(request: Request, name: str = "task_id", what: str = "task") -> str:
    """A path id, or 404 when it could never name anything."""
    raw: str = request.path_params[name]
    try:
        return _id.validate_python(raw)
    except ValidationError:
        raise NotFound(f"{what} {raw[:50]!r} not found", code=f"{what}_not_found") from None


def task_id(request: Request) -> str:
    return path_id(request)


def _task_response(outcome: Outcome) -> Response:
    return JSON(outcome.current.to_json(), status_code=outcome.status_code)


async def create_task(request: Request) -> Response:
    producer(request)
    payload = parse_body(await body(request), TaskCreate)
    outcome = await parts(request).service.apply_one(Op("create", payload.id, payload))
    return _task_response(outcome)


async def get_task(request: Request) -> Response:
    producer(request)
    tid = task_id(request)
    state = await parts(request).store.get_task(tid)
    if state is None:
        raise NotFound(f"task {tid!r} not found", code="task_not_found")
    return JSON(state.to_json())


async def patch_task(request: Request) -> Response:
    producer(request)
    tid = task_id(request)
    patch = parse_body(await body(request), TaskPatch)
    return _task_response(await parts(request).service.apply_one(Op("update", tid, patch)))


async def _no_body_expected(request: Request) -> None:
    raw = await body(request)
    if raw.strip() not in (b"", b"{}"):
        raise Unprocessable("this call takes no body (or {})", code="unexpected_body")


def _finisher(kind: OpKind) -> Any:
    async def endpoint(request: Request) -> Response:
        who = actor(request)
        tid = task_id(request)
        await _no_body_expected(request)
        op = Op(kind, tid, None, actor=who, reason="resumed")
        return _task_response(await parts(request).service.apply_one(op))

    endpoint.__name__ = f"{kind}_task"
    return endpoint


async def postpone_task(request: Request) -> Response:
    who = actor(request)
    tid = task_id(request)
    payload = parse_body(await body(request), Postpone)
    op = Op("postpone", tid, payload, actor=who)
    return _task_response(await parts(request).service.apply_one(op))


def _batch_op(item: CreateOp | UpdateOp | FinishOp | PostponeOp) -> Op:
    if isinstance(item, CreateOp):
        return Op("create", item.task.id, item.task)
    if isinstance(item, UpdateOp):
        return Op("update", item.id, item.changes)
    if isinstance(item, PostponeOp):
        return Op("postpone", item.id, Postpone(until=item.until))
    return Op(item.op, item.id)


async def batch(request: Request) -> Response:
    """Many task changes in one request and one transaction; each op succeeds or fails
    on its own, and the results come back in order."""
    producer(request)
    payload = parse_body(await body(request), Batch)
    results = await parts(request).service.apply([_batch_op(item) for item in payload.ops])
    out: list[dict[str, Any]] = []
    for result in results:
        if isinstance(result, ApiError):
            out.append({"status": result.status, **result.body()})
        else:
            out.append({"status": result.status_code, "task": result.current.to_json()})
    return JSON({"results": out})


routes = [
    Route("/api/v1/tasks", create_task, methods=["POST"]),
    Route("/api/v1/tasks/batch", batch, methods=["POST"]),
    Route("/api/v1/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/api/v1/tasks/{task_id}", patch_task, methods=["PATCH"]),
    Route("/api/v1/tasks/{task_id}/complete", _finisher("complete"), methods=["POST"]),
    Route("/api/v1/tasks/{task_id}/cancel", _finisher("cancel"), methods=["POST"]),
    Route("/api/v1/tasks/{task_id}/resume", _finisher("resume"), methods=["POST"]),
    Route("/api/v1/tasks/{task_id}/postpone", postpone_task, methods=["POST"]),
]
