"""The engine's HTTP side (Starlette): what it can start, its instances, the step pages,
and the webhook Taskbell calls; plus its background loops (sending to Taskbell, timers,
keeping the webhook endpoint registered).

| route | |
|---|---|
| ``GET /healthz`` | 200 |
| ``GET /processes`` | ``{"processes": [{id, name, file, defaults, documentation}],``
| | ``"errors": [{file, message}]}`` (the files that did not load) |
| ``POST /instances`` ``{"process", "data"?, "id"?}`` | 201 the instance (200 when ``id`` exists) |
| ``GET /instances``, ``GET /instances/{id}`` | the instances; one with its steps and data |
| ``GET /steps/{id}?sig=``, ``POST /steps/{id}`` | the step's page; Save / Complete |
| ``GET /steps/{id}?sig=&done=n`` | after Complete: the step that follows it, if any, |
| | opens once Taskbell's webhook is in (``_done_page``) |
| ``POST /webhooks/taskbell`` | Taskbell's signed deliveries (401 on a bad signature) |
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from engine.bpmn import Library, load_dir
from engine.core import Engine, EngineError, comment_rule, decision_field
from engine.pages import step_page
from engine.store import Store
from engine.taskbell import Sender, Taskbell, Unreachable, memberships, register, verify

log = logging.getLogger("engine")

WEBHOOK_PATH = "/webhooks/taskbell"
SAMPLES = Path(__file__).resolve().parent / "samples"


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    bpmn_dir: Path
    taskbell_url: str
    producer_key: str
    db: str = "engine.db"
    host: str = "127.0.0.1"
    port: int = 8100
    public_url: str = ""
    tick_s: float = 1.0
    retry_cap_s: float = 5.0
    api_key: str = ""  # when set, the instance API wants "Authorization: Bearer <key>"
    endpoint_check_s: float = 60.0

    @property
    def public(self) -> str:
        return (self.public_url or f"http://127.0.0.1:{self.port}").rstrip("/")

    @staticmethod
    def from_env(bpmn_dir: str | None, env: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if env is None else env)
        key = env.get("TASKBELL_PRODUCER_KEY", "").strip()
        if not key:
            raise ConfigError("TASKBELL_PRODUCER_KEY is not set (demo mode: demo-producer-key)")
        try:
            port = int(env.get("ENGINE_PORT", "8100"))
            tick = float(env.get("ENGINE_TICK_SECONDS", "1"))
            cap = float(env.get("ENGINE_RETRY_CAP_SECONDS", "5"))
        except ValueError as exc:
            raise ConfigError(f"a number setting is not a number: {exc}") from exc
        folder = Path(bpmn_dir or env.get("ENGINE_BPMN_DIR") or SAMPLES)
        if not folder.is_dir():
            raise ConfigError(f"--bpmn {folder}: not a folder")
        return Config(
            bpmn_dir=folder,
            taskbell_url=env.get("TASKBELL_URL", "http://127.0.0.1:8000").strip(),
            producer_key=key,
            db=env.get("ENGINE_DB", "engine.db"),
            host=env.get("ENGINE_HOST", "127.0.0.1"),
            port=port,
            public_url=env.get("ENGINE_PUBLIC_URL", "").strip(),
            tick_s=tick,
            retry_cap_s=cap,
            api_key=env.get("ENGINE_API_KEY", "").strip(),
        )


@dataclass
class Runtime:
    """What a running engine holds; ``app.state.engine``."""

    config: Config
    library: Library
    store: Store
    engine: Engine
    taskbell: Taskbell
    sender: Sender
    secret: str | None = None
    endpoint_id: str | None = None
    registered: asyncio.Event = field(default_factory=asyncio.Event)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.engine
    return rt


def _refused(request: Request) -> Response | None:
    """401 unless the request carries ``ENGINE_API_KEY`` (when one is set)."""
    key = _rt(request).config.api_key
    if not key:
        return None
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if hmac.compare_digest(given.encode(), key.encode()):
        return None
    return _error(401, "invalid_api_key", "send Authorization: Bearer <ENGINE_API_KEY>")


async def healthz(request: Request) -> Response:
    rt = _rt(request)
    return JSONResponse(
        {
            "ok": True,
            "registered": rt.registered.is_set(),
            "pending_calls": rt.store.pending_calls(),
        }
    )


async def processes(request: Request) -> Response:
    if (refused := _refused(request)) is not None:
        return refused
    rt = _rt(request)
    return JSONResponse(
        {
            "processes": [
                {
                    "id": d.id,
                    "name": d.name,
                    "file": d.file,
                    "defaults": d.defaults,
                    "documentation": d.documentation,
                }
                for d in rt.engine.definitions()
            ],
            "errors": [{"file": e.file, "message": e.message} for e in rt.library.errors],
        }
    )


async def start_instance(request: Request) -> Response:
    if (refused := _refused(request)) is not None:
        return refused
    rt = _rt(request)
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _error(400, "malformed_json", "the body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("process"), str):
        return _error(422, "invalid", 'expected {"process": "<BPMN process id>", "data"?: {}}')
    data = body.get("data", {})
    given = body.get("id")
    unknown = set(body) - {"process", "data", "id"}
    if not isinstance(data, dict) or (given is not None and not isinstance(given, str)) or unknown:
        return _error(422, "invalid", "data must be an object, id a string; nothing else")
    existed = given is not None and rt.store.instance(given) is not None
    try:
        instance_id = rt.engine.start(body["process"], data, given)
    except EngineError as exc:
        return _error(exc.status, exc.code, exc.message)
    rt.sender.wake.set()
    return JSONResponse(rt.engine.view(instance_id), status_code=200 if existed else 201)


async def list_instances(request: Request) -> Response:
    if (refused := _refused(request)) is not None:
        return refused
    return JSONResponse({"instances": _rt(request).engine.list_view()})


async def get_instance(request: Request) -> Response:
    if (refused := _refused(request)) is not None:
        return refused
    try:
        return JSONResponse(_rt(request).engine.view(request.path_params["instance_id"]))
    except EngineError as exc:
        return _error(exc.status, exc.code, exc.message)


async def webhook(request: Request) -> Response:
    rt = _rt(request)
    body = await request.body()
    if rt.secret is None:
        return Response("not registered yet", status_code=503, headers={"Retry-After": "1"})
    if not verify(rt.secret, request.headers, body):
        log.warning("webhook with a bad signature refused")
        return _error(401, "bad_signature", "the webhook signature does not verify")
    try:
        payload = orjson.loads(body)
        kind = payload["type"]
        data = payload["data"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return _error(422, "invalid", "not a Taskbell webhook payload")
    webhook_id = request.headers["webhook-id"]
    actor = data.get("actor")
    if kind == "task.completed":
        members: dict[str, frozenset[str]] = {}
        if not rt.engine.seen(webhook_id) and rt.store.step(str(data.get("id", ""))) is not None:
            members = await memberships(rt.taskbell, rt.engine.roles())
        outcome = rt.engine.task_completed(webhook_id, data, actor, members)
    elif kind == "task.canceled":
        outcome = rt.engine.task_canceled(webhook_id, data, actor)
    else:
        return JSONResponse({"ok": True, "note": f"{kind} is not used"})
    if outcome.changed:
        rt.sender.wake.set()
    log.info("webhook %s %s %s: %s", webhook_id, kind, data.get("id"), outcome.note)
    return JSONResponse({"ok": True, "note": outcome.note})


# ---------------------------------------------------------------------- step pages


def _fields(task: Any) -> list[Any]:
    form = getattr(getattr(task, "task_spec", None), "form", None)
    return list(getattr(form, "fields", []) or [])


def _page(
    rt: Runtime,
    step_id: str,
    *,
    message: str | None = None,
    error: str | None = None,
    refresh: str | None = None,
    next_step: tuple[str, str] | None = None,
) -> Response:
    step = rt.store.step(step_id)
    assert step is not None
    instance = rt.store.instance(step.instance_id)
    task = rt.engine.step_task(step) if step.status == "open" else None
    html = step_page(
        step,
        process_name=instance.name if instance else "",
        sig=rt.engine.link_sig(step_id),
        fields=_fields(task),
        data=dict(task.data) if task is not None else {},
        open_=step.status == "open" and message is None,
        message=message,
        error=error,
        refresh=refresh,
        next_step=next_step,
    )
    return HTMLResponse(html, status_code=422 if error else 200)


def _allowed(rt: Runtime, step_id: str, sig: str) -> bool:
    expected = rt.engine.link_sig(step_id).encode()
    return hmac.compare_digest(sig.encode(), expected) and (rt.store.step(step_id) is not None)


async def get_step(request: Request) -> Response:
    rt = _rt(request)
    step_id = request.path_params["step_id"]
    if not _allowed(rt, step_id, request.query_params.get("sig", "")):
        return HTMLResponse("<h1>Not found</h1>", status_code=404)
    done = request.query_params.get("done")
    if not done:
        return _page(rt, step_id)
    return _done_page(rt, step_id, request.query_params.get("sig", ""), done)


# How many times the page after a completion looks again (once a second) for the step
# the process gives the same person next, while Taskbell's webhook is on its way.
DONE_LOOKS = 10


def _done_page(rt: Runtime, step_id: str, sig: str, done: str) -> Response:
    """After Complete on a step's page: once the engine has the completion (Taskbell's
    webhook), the step that ``follows`` it, if any, opens by itself (the person works
    from the pages, so the next page is theirs: the hand-off of docs/protocol.md); until
    then the page looks again every second, at most ``DONE_LOOKS`` times."""
    step = rt.store.step(step_id)
    assert step is not None
    message = "Completed: the process moves on. You can close this page."
    if step.status == "open":
        looks = int(done) if done.isdigit() else DONE_LOOKS
        again = None
        if looks < DONE_LOOKS:
            again = f"/steps/{step_id}?" + urlencode({"sig": sig, "done": str(looks + 1)})
        return _page(rt, step_id, message=message, refresh=again)
    # The link is a capability: only a step for the same audience (the same person, or
    # the same queue) is shown, so whoever holds this step's link sees nothing they
    # could not see in Taskbell anyway (a queue step followed by one for the person who
    # took it must not hand that person's page to the rest of the queue).
    after = [
        s
        for s in rt.store.steps(step.instance_id)
        if s.follows == step_id and (s.owner, s.role) == (step.owner, step.role)
    ]
    nxt = next((s for s in after if s.status == "open"), None)
    if nxt is None:
        return _page(rt, step_id, message=message)
    url = rt.engine.step_url(nxt.id)
    return _page(rt, step_id, message="Completed.", refresh=url, next_step=(nxt.title, url))


def _values(task: Any, form: dict[str, list[str]]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in _fields(task):
        raw = form.get(f.id, [""])[-1].strip()
        if f.type == "boolean":
            values[f.id] = raw.lower() in ("true", "on", "1", "yes")
        elif f.type == "enum":
            if raw in {str(o.id) for o in f.options}:
                values[f.id] = raw
        elif f.type == "long" and raw.lstrip("-").isdigit():
            values[f.id] = int(raw)
        else:
            values[f.id] = raw
    return values


def _missing(rt: Runtime, task: Any, values: dict[str, Any]) -> list[str]:
    """Fields whose ``required_when`` property (a Python expression over the instance data
    and the form) holds but which are empty; ``required`` validation counts too, and so
    does the comment that the chosen decision requires (``comment.<value>`` property)."""
    missing = []
    context = {**dict(task.data), **values}
    for f in _fields(task):
        condition = f.get_property("required_when")
        required = f.has_validation("required")
        if condition:
            try:
                required = bool(rt.engine.script_engine.environment.evaluate(condition, context))
            except Exception:
                required = False
        if required and values.get(f.id) in (None, ""):
            missing.append(str(f.label or f.id))
    field = decision_field(task.task_spec)
    chosen = values.get(field.id) if field is not None else None
    needs_comment = chosen and comment_rule(task.task_spec, str(chosen)) == "required"
    if needs_comment and not str(values.get("comment") or "").strip():
        label = next((str(f.label or f.id) for f in _fields(task) if f.id == "comment"), "")
        if (label or "Comment") not in missing:
            missing.append(label or "Comment")
    return missing


async def post_step(request: Request) -> Response:
    rt = _rt(request)
    step_id = request.path_params["step_id"]
    form = parse_qs((await request.body()).decode(errors="replace"), keep_blank_values=True)
    sig = form.get("sig", [""])[-1]
    if not _allowed(rt, step_id, sig):
        return HTMLResponse("<h1>Not found</h1>", status_code=404)
    step = rt.store.step(step_id)
    assert step is not None
    if step.status != "open":
        return _page(rt, step_id)
    task = rt.engine.step_task(step)
    values = _values(task, form)
    action = form.get("action", ["complete"])[-1]
    rt.engine.save_step_form(step_id, values)
    if action == "save":
        return _page(rt, step_id, error=None)
    missing = _missing(rt, task, values)
    if missing:
        return _page(rt, step_id, error="Required: " + ", ".join(missing))
    decision: dict[str, Any] | None = None
    field = decision_field(task.task_spec)
    if field is not None and "actions" in step.body and values.get(field.id):
        decision = {"outcome": str(values[field.id])}
        if str(values.get("comment") or "").strip():
            decision["comment"] = str(values["comment"])
    try:
        answer = await rt.taskbell.call(
            "POST", f"/api/v1/tasks/{step_id}/complete", decision, deadline_s=10
        )
    except Unreachable:
        return _page(rt, step_id, error="Taskbell cannot be reached right now; try again.")
    if answer.status == 200:
        query = urlencode({"sig": sig, "done": "1"})
        return RedirectResponse(f"/steps/{step_id}?{query}", status_code=303)
    detail = answer.body.get("error", {}).get("message") if isinstance(answer.body, dict) else ""
    return _page(rt, step_id, error=f"Taskbell answered {answer.status}: {detail}")


# ---------------------------------------------------------------------- background


async def _keep_registered(rt: Runtime) -> None:
    """Register at start, then check the endpoint every ``endpoint_check_s`` (Taskbell
    disables an endpoint that failed for a day; its database may have been replaced)."""
    attempt = 0
    url = rt.config.public + WEBHOOK_PATH

    def got(secret: str) -> None:
        rt.secret = secret

    while True:
        try:
            rt.endpoint_id = await register(rt.taskbell, rt.store, url, got)
            rt.registered.set()
            attempt = 0
            await asyncio.sleep(rt.config.endpoint_check_s)
        except Unreachable as exc:
            wait = rt.taskbell.backoff(attempt)
            attempt += 1
            log.warning("webhook registration failed (%s); retrying in %.1fs", exc, wait)
            await asyncio.sleep(wait)


async def _timers(rt: Runtime) -> None:
    while True:
        await asyncio.sleep(rt.config.tick_s)
        try:
            if rt.engine.tick():
                rt.sender.wake.set()
        except Exception:
            log.exception("timer tick failed")


def create_app(config: Config) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        library = load_dir(config.bpmn_dir)
        for error in library.errors:
            log.error("cannot load %s", error)
        for definition in library.definitions.values():
            log.info("loaded %s (%s) from %s", definition.id, definition.name, definition.file)
        store = Store(config.db)
        engine = Engine(library, store, config.public)
        taskbell = Taskbell(
            config.taskbell_url, config.producer_key, retry_cap_s=config.retry_cap_s
        )
        sender = Sender(store, taskbell, on_refused=engine.call_refused)
        rt = Runtime(config, library, store, engine, taskbell, sender)
        rt.secret = store.get_meta("webhook_secret")
        app.state.engine = rt
        tasks = [
            asyncio.create_task(sender.run(), name="engine-sender"),
            asyncio.create_task(_keep_registered(rt), name="engine-register"),
            asyncio.create_task(_timers(rt), name="engine-timers"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await taskbell.aclose()
            store.close()

    routes = [
        Route("/healthz", healthz),
        Route("/processes", processes),
        Route("/instances", start_instance, methods=["POST"]),
        Route("/instances", list_instances),
        Route("/instances/{instance_id}", get_instance),
        Route("/steps/{step_id}", get_step),
        Route("/steps/{step_id}", post_step, methods=["POST"]),
        Route(WEBHOOK_PATH, webhook, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
