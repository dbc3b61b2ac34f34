"""Demo mode only: pick who you are without handling tokens, and start a sample process.

Every route here answers 404 unless the server runs with ``TASKBELL_DEMO=1`` and demo mode
made up both the secret and the producer keys: with a real secret or real keys configured
the routes would hand out tokens signed with the real secret and write without a key.

"Start sample process" (``POST /api/v1/demo/process``) starts a real BPMN instance on the
engine (``engine/``) when ``TASKBELL_ENGINE_URL`` is set (``scripts/run`` sets it when it
starts the engine): ``POST {engine}/instances {"process", "data"}``, the sample
``invoice_approval`` unless the body names another. Without the setting it makes up a
process of a few tasks. Either way the demo users are put into the samples' role queues
(``approvers``, ``managers``) first, so the queues show in the panel.

The demo person ``carol`` (``DEMO_PROCESS_ADMINS``) is also a process admin: her token
carries ``roles: ["process-admin"]``, so the panel's process view can be tried.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from typing import Annotated, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, Parts, body, parts
from server.auth import PROCESS_ADMIN, mint_for
from server.errors import ApiError, NotFound, Unavailable
from server.i18n import from_accept_language, texts_for
from server.ops import CreateTask, SetMembers
from server.wire import Kind, ProcessRef, RecordRef, TaskCreate, parse_body

log = logging.getLogger("taskbell.demo")

_counter = itertools.count(1)

DEMO_ROLES = ("approvers", "managers")  # the role queues of the engine's samples
ENGINE_PROCESS = "invoice_approval"  # what the panel's button starts on the engine
DEMO_PROCESS_ADMINS = ("carol",)  # demo people whose tokens carry the process-admin role

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
    # With the engine (TASKBELL_ENGINE_URL): which BPMN process, and its start data.
    process: (
        Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\w.-]+$")] | None
    ) = None
    data: dict[str, Any] | None = None


class EngineRefused(ApiError):
    """The engine answered, but not with a started instance (its status and error)."""

    status = 502
    code = "engine_refused"


def _demo(request: Request) -> Parts:
    """The app's parts, or 404 unless demo routes may run: demo mode is on and it made
    up both the secret and the producer keys (``Settings.demo_routes``)."""
    p = parts(request)
    if not p.settings.demo_routes:
        raise NotFound("not found", code="not_found")
    return p


async def info(request: Request) -> Response:
    on = parts(request).settings.demo_routes
    settings = parts(request).settings
    return JSON(
        {
            "demo": on,
            "users": list(settings.demo_users) if on else [],
            # Whether "Start sample process" starts a real BPMN instance (the engine).
            "engine": on and bool(settings.engine_url),
        }
    )


async def token(request: Request) -> Response:
    p = _demo(request)
    req = parse_body(await body(request), TokenRequest)
    roles = [PROCESS_ADMIN] if req.user in DEMO_PROCESS_ADMINS else []
    return JSON({"user": req.user, "token": mint_for(p.settings, req.user, roles=roles)})


async def _demo_roles(p: Parts) -> None:
    """Every demo user in each of the samples' role queues (repeating it changes nothing)."""
    for role in DEMO_ROLES:
        await p.service.run(SetMembers(role, tuple(p.settings.demo_users)))


async def start_process(request: Request) -> Response:
    """Start a sample process: a real BPMN instance on the engine when
    ``TASKBELL_ENGINE_URL`` is set, else a few made-up tasks for a few people, one every
    ``interval_s``."""
    p = _demo(request)
    raw = await body(request)
    req = parse_body(raw, ProcessRequest) if raw.strip() else ProcessRequest()
    await _demo_roles(p)
    if p.settings.engine_url:
        return await _start_on_engine(p.settings.engine_url, req)
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


async def _start_on_engine(engine_url: str, req: ProcessRequest) -> Response:
    """``POST {engine}/instances``; 202 with the instance id and its first steps."""
    process = req.process or ENGINE_PROCESS
    payload = {"process": process, "data": req.data or {}}
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            resp = await client.post(f"{engine_url}/instances", json=payload)
    except httpx.HTTPError as exc:
        log.warning("the engine at %s cannot be reached: %s", engine_url, exc)
        raise Unavailable(
            f"the BPMN engine at {engine_url} cannot be reached; is it running?",
            code="engine_unavailable",
        ) from exc
    try:
        answer: Any = resp.json()
    except ValueError:
        answer = None
    if resp.status_code != 201 or not isinstance(answer, dict) or "id" not in answer:
        error = answer.get("error") if isinstance(answer, dict) else None
        detail = error.get("message") if isinstance(error, dict) else resp.text[:200]
        raise EngineRefused(f"the engine answered {resp.status_code}: {detail}")
    steps = [str(s["id"]) for s in answer.get("current") or [] if isinstance(s, dict)]
    return JSON(
        {"instance_id": str(answer["id"]), "tasks": steps, "process": process},
        status_code=202,
    )


async def _trickle(p: Parts, tasks: list[TaskCreate], interval: float) -> None:
    for task in tasks:
        await asyncio.sleep(interval)
        await p.service.apply([CreateTask(task)])


async def demo_task_page(request: Request) -> Response:
    """The page a demo task's url points at (a real product would open the CRM page), in
    the browser's language (``Accept-Language``: the link carries no token)."""
    tid = request.path_params["task_id"]
    _demo(request)
    texts = texts_for(from_accept_language(request.headers.get("accept-language")))
    code = f"<code>{_escape(tid)}</code>"
    # The task id is the only markup in the sentence: escape the words, then put it in.
    mark = "\x00"  # survives escaping and is in no translation
    sentence = _escape(
        texts.gettext("This is where the CRM would open the page for task {task}.", task=mark)
    ).replace(mark, code)
    html = (
        f"<!doctype html><html lang={texts.tag}><meta charset=utf-8>"
        f"<title>{_escape(texts.gettext('Demo task'))}</title>"
        "<link rel=icon href=/favicon.ico>"
        "<link rel=stylesheet href=/static/panel.css>"
        f"<main class=demo-page><h1>{_escape(texts.gettext('Demo task page'))}</h1>"
        f"<p>{sentence}</p>"
        f"<p><a href='/'>{_escape(texts.gettext('Back to the panel'))}</a></p></main>"
    )
    return Response(html, media_type="text/html", headers={"Vary": "Accept-Language"})


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
