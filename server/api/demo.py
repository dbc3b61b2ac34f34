"""Demo mode only: pick who you are without handling tokens, and start a sample process.

Every route here answers 404 unless the server runs with ``TASKBELL_DEMO=1`` and demo mode
made up both the secret and the producer keys: with a real secret or real keys configured
the routes would hand out tokens signed with the real secret and write without a key.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, Parts, body, parts
from server.auth import mint_for
from server.errors import NotFound
from server.ops import CreateTask
from server.wire import Kind, ProcessRef, RecordRef, TaskCreate, parse_body

_counter = itertools.count(1)

SAMPLE_STEPS: list[tuple[Kind, str, str, str]] = [
    (Kind.ACTIVITY, "Call {record} about the renewal", "Account", "Acme Corp"),
    (Kind.EMAIL, "Send the proposal to {record}", "Opportunity", "Globex expansion"),
    (Kind.EDIT_RECORD, "Fill in the billing details of {record}", "Account", "Initech"),
    (Kind.PAGE, "Approve invoice INV-{n} for {record}", "Invoice", "Umbrella"),
    (Kind.ACTIVITY, "Schedule onboarding with {record}", "Contact", "Dana Scully"),
]


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w.@-]+$")]


class ProcessRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    owners: Annotated[list[str], Field(max_length=10)] | None = None
    steps: Annotated[int, Field(ge=1, le=20)] = 5
    interval_s: Annotated[float, Field(ge=0, le=10)] = 0.6


def _demo(request: Request) -> Parts:
    """The app's parts, or 404 unless demo routes may run: demo mode is on and it made
    up both the secret and the producer keys (``Settings.demo_routes``)."""
    p = parts(request)
    if not p.settings.demo_routes:
        raise NotFound("not found", code="not_found")
    return p


async def info(request: Request) -> Response:
    on = parts(request).settings.demo_routes
    return JSON({"demo": on, "users": list(parts(request).settings.demo_users) if on else []})


async def token(request: Request) -> Response:
    p = _demo(request)
    req = parse_body(await body(request), TokenRequest)
    return JSON({"user": req.user, "token": mint_for(p.settings, req.user)})


async def start_process(request: Request) -> Response:
    """Start a sample process: a few tasks for a few people, one every ``interval_s``."""
    p = _demo(request)
    raw = await body(request)
    req = parse_body(raw, ProcessRequest) if raw.strip() else ProcessRequest()
    owners = req.owners or list(p.settings.demo_users)
    n = next(_counter)
    instance = f"demo-{n}-{random.randrange(16**6):06x}"
    tasks: list[TaskCreate] = []
    for i in range(req.steps):
        kind, title, entity, record = SAMPLE_STEPS[(n + i) % len(SAMPLE_STEPS)]
        tid = f"{instance}-{i + 1}"
        tasks.append(
            TaskCreate(
                id=tid,
                owner=owners[i % len(owners)],
                title=title.format(record=record, n=1000 + n * 10 + i),
                kind=kind,
                process=ProcessRef(instance_id=instance, name="Customer onboarding"),
                record=RecordRef(entity=entity, id=record.lower().replace(" ", "-"), title=record),
                url=f"/demo/task/{tid}",
            )
        )
    first, rest = tasks[0], tasks[1:]
    await p.service.apply_one(CreateTask(first))
    if rest:
        runner = asyncio.create_task(_trickle(p, rest, req.interval_s))
        request.app.state.background.add(runner)
        runner.add_done_callback(request.app.state.background.discard)
    return JSON({"instance_id": instance, "tasks": [t.id for t in tasks]}, status_code=202)


async def _trickle(p: Parts, tasks: list[TaskCreate], interval: float) -> None:
    for task in tasks:
        await asyncio.sleep(interval)
        await p.service.apply([CreateTask(task)])


async def demo_task_page(request: Request) -> Response:
    """The page a demo task's url points at (a real product would open the CRM page)."""
    tid = request.path_params["task_id"]
    html = (
        "<!doctype html><meta charset=utf-8><title>Demo task</title>"
        "<link rel=icon href=/favicon.ico>"
        "<link rel=stylesheet href=/static/panel.css>"
        f"<main class=demo-page><h1>Demo task page</h1><p>This is where the CRM would "
        f"open the page for task <code>{_escape(tid)}</code>.</p>"
        "<p><a href='/'>Back to the panel</a></p></main>"
    )
    _demo(request)
    return Response(html, media_type="text/html")


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;")
    )


routes = [
    Route("/api/v1/demo", info, methods=["GET"]),
    Route("/api/v1/demo/token", token, methods=["POST"]),
    Route("/api/v1/demo/process", start_process, methods=["POST"]),
    Route("/demo/task/{task_id}", demo_task_page, methods=["GET"]),
]
