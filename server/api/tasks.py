"""Task endpoints: producers create and change tasks; owners act on their own."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, actor, body, parts, producer
from server.errors import ApiError, NotFound, Unprocessable
from server.fields import Id
from server.ops import (
    CancelTask,
    ClaimTask,
    CompleteTask,
    CreateTask,
    PostponeTask,
    ResumeTask,
    TaskOp,
    UnclaimTask,
    UpdateTask,
)
from server.transitions import Outcome
from server.wire import (
    Batch,
    Claim,
    Complete,
    CreateOp,
    FinishOp,
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


def _status(outcome: Outcome) -> int:
    return 201 if outcome.created else 200


def _task_response(outcome: Outcome) -> Response:
    return JSON(outcome.current.to_json(), status_code=_status(outcome))


async def create_task(request: Request) -> Response:
    tenant = producer(request)
    payload = parse_body(await body(request), TaskCreate)
    outcome = await parts(request).service.apply_one(CreateTask(payload, tenant))
    return _task_response(outcome)


async def get_task(request: Request) -> Response:
    tenant = producer(request)
    tid = task_id(request)
    state = await parts(request).reads.get_task(tenant, tid)
    if state is None:
        raise NotFound(f"task {tid!r} not found", code="task_not_found")
    return JSON(state.to_json())


async def task_history(request: Request) -> Response:
    """Every change of a task with who made it and as what: for producers, and for a
    person who can see the task (its feed is one they follow)."""
    who = actor(request)
    tid = task_id(request)
    reads = parts(request).reads
    if await reads.visible_task(who.tenant, tid, who.user) is None:
        raise NotFound(f"task {tid!r} not found", code="task_not_found")
    return JSON({"id": tid, "changes": await reads.history(who.tenant, tid)})


async def patch_task(request: Request) -> Response:
    tenant = producer(request)
    tid = task_id(request)
    patch = parse_body(await body(request), TaskPatch)
    return _task_response(await parts(request).service.apply_one(UpdateTask(tid, patch, tenant)))


async def _no_body_expected(request: Request) -> None:
    raw = await body(request)
    if raw.strip() not in (b"", b"{}"):
        raise Unprocessable("this call takes no body (or {})", code="unexpected_body")


def _finisher(make: type[CompleteTask | CancelTask | ResumeTask]) -> Any:
    async def endpoint(request: Request) -> Response:
        who = actor(request)
        tid = task_id(request)
        await _no_body_expected(request)
        op = make(tid, who.user, who.tenant)
        return _task_response(await parts(request).service.apply_one(op))

    endpoint.__name__ = f"{make.kind}_task"
    return endpoint


_NO_DECISION = Complete()  # frozen: one for every completion without a body


async def complete_task(request: Request) -> Response:
    """Complete a task; the optional body says what was decided:
    ``{"outcome": "<action id>", "comment": "..."}``."""
    who = actor(request)
    tid = task_id(request)
    raw = await body(request)
    decision = parse_body(raw, Complete) if raw.strip() else _NO_DECISION
    op = CompleteTask(tid, who.user, who.tenant, decision.outcome, decision.comment)
    return _task_response(await parts(request).service.apply_one(op))


async def postpone_task(request: Request) -> Response:
    who = actor(request)
    tid = task_id(request)
    payload = parse_body(await body(request), Postpone)
    op = PostponeTask(tid, payload.until, actor=who.user, tenant=who.tenant)
    return _task_response(await parts(request).service.apply_one(op))


async def claim_task(request: Request) -> Response:
    """A member claims a queue task for themselves (no body, or ``{}``); a producer
    claims it for someone: ``{"user": "alice"}``."""
    who = actor(request)
    tid = task_id(request)
    payload = parse_body((await body(request)).strip() or b"{}", Claim)
    if who.user is not None:
        if payload.user is not None and payload.user != who.user:
            raise Unprocessable("a person claims for themselves only", code="claim_for_other")
        claimer = who.user
    elif payload.user is None:
        raise Unprocessable('a producer names who claims: {"user": ...}', code="claim_needs_user")
    else:
        claimer = payload.user
    op = ClaimTask(tid, claimer, actor=who.user, tenant=who.tenant)
    return _task_response(await parts(request).service.apply_one(op))


async def unclaim_task(request: Request) -> Response:
    who = actor(request)
    tid = task_id(request)
    await _no_body_expected(request)
    op = UnclaimTask(tid, actor=who.user, tenant=who.tenant)
    return _task_response(await parts(request).service.apply_one(op))


_FINISHERS: dict[str, type[CompleteTask | CancelTask | ResumeTask]] = {
    "complete": CompleteTask,
    "cancel": CancelTask,
    "resume": ResumeTask,
}


def _batch_op(item: CreateOp | UpdateOp | FinishOp | PostponeOp, tenant: str) -> TaskOp:
    match item:
        case CreateOp(task=body):
            return CreateTask(body, tenant)
        case UpdateOp(id=tid, changes=patch):
            return UpdateTask(tid, patch, tenant)
        case PostponeOp(id=tid, until=until):
            return PostponeTask(tid, until, tenant=tenant)
        case FinishOp(op="complete", id=tid, outcome=outcome, comment=comment):
            return CompleteTask(tid, tenant=tenant, outcome=outcome, comment=comment)
        case FinishOp(op=kind, id=tid):
            return _FINISHERS[kind](tid, tenant=tenant)


async def batch(request: Request) -> Response:
    """Many task changes in one request and one transaction; each op succeeds or fails
    on its own, and the results come back in order."""
    tenant = producer(request)
    payload = parse_body(await body(request), Batch)
    results = await parts(request).service.apply([_batch_op(i, tenant) for i in payload.ops])
    out: list[dict[str, Any]] = []
    for result in results:
        if isinstance(result, ApiError):
            out.append({"status": result.status, **result.body()})
        else:
            out.append({"status": _status(result), "task": result.current.to_json()})
    return JSON({"results": out})


routes = [
    Route("/api/v1/tasks", create_task, methods=["POST"]),
    Route("/api/v1/tasks/batch", batch, methods=["POST"]),
    Route("/api/v1/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/api/v1/tasks/{task_id}", patch_task, methods=["PATCH"]),
    Route("/api/v1/tasks/{task_id}/complete", complete_task, methods=["POST"]),
    Route("/api/v1/tasks/{task_id}/cancel", _finisher(CancelTask), methods=["POST"]),
    Route("/api/v1/tasks/{task_id}/resume", _finisher(ResumeTask), methods=["POST"]),
    Route("/api/v1/tasks/{task_id}/postpone", postpone_task, methods=["POST"]),
    Route("/api/v1/tasks/{task_id}/claim", claim_task, methods=["POST"]),
    Route("/api/v1/tasks/{task_id}/history", task_history, methods=["GET"]),
    Route("/api/v1/tasks/{task_id}/unclaim", unclaim_task, methods=["POST"]),
]
