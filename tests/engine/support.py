"""Helpers of the engine tests: a real engine (in this event loop under uvicorn, or as
``python -m engine`` in a child process) next to a real Taskbell, and waiting for what
each side shows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette

from engine.app import SAMPLES, Config, Runtime, create_app
from server.settings import Settings
from tests.support.app import PRODUCER_KEY, SECRET, token
from tests.support.processes import ChildProcess, Managed, free_port, track, untrack, wait_until
from tests.support.server_proc import REPO_ROOT, http_status

# Taskbell with quick webhook retries and loopback receivers allowed.
FAST = {
    "webhook_allow_private": True,
    "outbox_poll_s": 0.05,
    "outbox_lease_s": 2.0,
    "webhook_retry_base_s": 0.1,
    "webhook_retry_cap_s": 0.5,
    "webhook_timeout_s": 3.0,
}
FAST_ENV = {
    "TASKBELL_SECRET": SECRET,
    "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
    "TASKBELL_WEBHOOK_ALLOW_PRIVATE": "1",
    "TASKBELL_OUTBOX_POLL_SECONDS": "0.05",
    "TASKBELL_OUTBOX_LEASE_SECONDS": "2",
    "TASKBELL_WEBHOOK_RETRY_SECONDS": "0.1",
    "TASKBELL_WEBHOOK_RETRY_CAP_SECONDS": "0.5",
}


def fast(settings: Settings) -> Settings:
    return replace(settings, **FAST)  # type: ignore[arg-type]


def engine_config(
    taskbell_url: str, db: Path, *, port: int | None = None, bpmn: Path = SAMPLES
) -> Config:
    port = port or free_port()
    return Config(
        bpmn_dir=bpmn,
        taskbell_url=taskbell_url,
        producer_key=PRODUCER_KEY,
        db=str(db),
        port=port,
        tick_s=0.2,
        retry_cap_s=0.5,
    )


@dataclass
class EngineHandle:
    """A running engine: where it is and (in-process) its runtime."""

    config: Config
    app: Starlette | None = None

    @property
    def base_url(self) -> str:
        return self.config.public

    @property
    def runtime(self) -> Runtime:
        assert self.app is not None, "an engine in a child process has no runtime here"
        rt: Runtime = self.app.state.engine
        return rt

    def client(self) -> httpx.AsyncClient:
        key = self.config.api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(
            base_url=self.base_url, headers=headers, trust_env=False, timeout=10
        )

    async def start(self, process: str, **data: Any) -> str:
        async with self.client() as c:
            resp = await c.post("/instances", json={"process": process, "data": data})
        assert resp.status_code == 201, resp.text
        instance_id: str = resp.json()["id"]
        return instance_id

    async def view(self, instance_id: str) -> dict[str, Any]:
        async with self.client() as c:
            resp = await c.get(f"/instances/{instance_id}")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def wait_registered(self, timeout: float = 10) -> None:
        async def ready() -> bool:
            async with self.client() as c:
                with contextlib.suppress(httpx.HTTPError):
                    return bool((await c.get("/healthz")).json()["registered"])
            return False

        await eventually(ready, timeout, "the engine registered its webhook endpoint")


@contextlib.asynccontextmanager
async def serve_engine(
    config: Config, *, wait_registered: bool = True
) -> AsyncIterator[EngineHandle]:
    """The engine app under a real uvicorn in this event loop, until the block ends
    (once it has registered its webhook endpoint, unless told not to wait)."""
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    assert server.started, "the engine did not start"
    handle = EngineHandle(config, app)
    try:
        if wait_registered:
            await handle.wait_registered()
        yield handle
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


class EngineProcess(Managed):
    """``python -m engine --bpmn DIR`` as a child process (from a folder that is not the
    repository, so the installed package is what runs), restartable on its port."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._dir = Path(tempfile.mkdtemp(prefix="taskbell-engine-"))
        self.log_path = self._dir / "engine.log"
        self._child: ChildProcess | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKBELL_", "ENGINE_"))}
        env.update(
            PYTHONUNBUFFERED="1",
            # This checkout's engine, not whichever one the editable install points at.
            PYTHONPATH=str(REPO_ROOT),
            TASKBELL_URL=self.config.taskbell_url,
            TASKBELL_PRODUCER_KEY=self.config.producer_key,
            ENGINE_PORT=str(self.config.port),
            ENGINE_DB=self.config.db,
            ENGINE_TICK_SECONDS=str(self.config.tick_s),
            ENGINE_RETRY_CAP_SECONDS=str(self.config.retry_cap_s),
        )
        return env

    def start(self) -> Self:
        track(self)
        self._child = ChildProcess(
            [sys.executable, "-m", "engine", "--bpmn", str(self.config.bpmn_dir)],
            log_path=self.log_path,
            cwd=self._dir,
            env=self.env(),
        )
        wait_until(
            lambda: http_status(self.config.public + "/healthz") == 200,
            child=self._child,
            what="the engine",
            timeout=20,
        )
        return self

    def kill(self) -> None:
        """SIGKILL, like a crash."""
        if self._child is not None:
            self._child.stop(signal.SIGKILL, 5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        if self._child is not None:
            self._child.stop(signal.SIGTERM, 5)
        untrack(self)
        shutil.rmtree(self._dir, ignore_errors=True)


async def eventually(check: Callable[[], Any], timeout: float = 10, what: str = "") -> Any:
    """Poll ``check`` (plain or async) until it returns something truthy; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not in {timeout}s: {what or check}")
        await asyncio.sleep(0.05)


# The role queues of the samples, and who is in them (tests that need others set them).
ROLES: dict[str, list[str]] = {"approvers": ["bob", "carol"], "managers": ["carol"]}


class People:
    """Taskbell's API as each person (user tokens) and as the producer."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def person(self, user: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token(user)}"},
            trust_env=False,
            timeout=10,
        )

    def producer(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {PRODUCER_KEY}"},
            trust_env=False,
            timeout=10,
        )

    async def set_roles(self, roles: dict[str, list[str]] | None = None) -> None:
        """``PUT /roles/{role}/members`` for each role (the samples' ``ROLES``)."""
        async with self.producer() as c:
            for role, members in (ROLES if roles is None else roles).items():
                resp = await c.put(f"/api/v1/roles/{role}/members", json={"members": members})
                assert resp.status_code == 200, resp.text

    async def running(self, user: str, feeds: str = "all") -> list[dict[str, Any]]:
        """The running tasks ``user`` sees: their own and their queues' (``feeds=all``),
        or only their own (``own``)."""
        async with self.person(user) as c:
            resp = await c.get("/api/v1/me/tasks", params={"status": "running", "feeds": feeds})
        assert resp.status_code == 200, resp.text
        tasks: list[dict[str, Any]] = resp.json()["tasks"]
        return tasks

    async def wait_task(
        self, user: str, instance_id: str, spec: str, timeout: float = 10, feeds: str = "all"
    ) -> dict[str, Any]:
        """The running task of ``instance_id`` for the user task ``spec`` in ``user``'s
        panel, own or in one of their queues (waits for it)."""

        async def find() -> dict[str, Any] | None:
            for task in await self.running(user, feeds):
                process = task.get("process") or {}
                if process.get("instance_id") == instance_id and f".{spec}." in task["id"]:
                    return task
            return None

        found: dict[str, Any] = await eventually(find, timeout, f"{spec} for {user}")
        return found

    async def complete(
        self, user: str, task_id: str, outcome: str | None = None, comment: str | None = None
    ) -> dict[str, Any]:
        """``user`` completes the task (with a decision, for a task with actions)."""
        resp = await self.try_complete(user, task_id, outcome, comment)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def try_complete(
        self, user: str, task_id: str, outcome: str | None = None, comment: str | None = None
    ) -> httpx.Response:
        decision = {"outcome": outcome, "comment": comment}
        payload = {k: v for k, v in decision.items() if v is not None}
        async with self.person(user) as c:
            return await c.post(f"/api/v1/tasks/{task_id}/complete", json=payload or None)

    async def claim(self, user: str, task_id: str) -> dict[str, Any]:
        async with self.person(user) as c:
            resp = await c.post(f"/api/v1/tasks/{task_id}/claim")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def task(self, task_id: str) -> dict[str, Any]:
        async with self.producer() as c:
            resp = await c.get(f"/api/v1/tasks/{task_id}")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def process(self, instance_id: str) -> dict[str, Any]:
        async with self.producer() as c:
            resp = await c.get(f"/api/v1/processes/{instance_id}")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    async def wait_process(
        self, instance_id: str, status: str, timeout: float = 10
    ) -> dict[str, Any]:
        async def ended() -> dict[str, Any] | None:
            async with self.producer() as c:
                resp = await c.get(f"/api/v1/processes/{instance_id}")
            if resp.status_code == 200 and resp.json()["status"] == status:
                body: dict[str, Any] = resp.json()
                return body
            return None

        found: dict[str, Any] = await eventually(ended, timeout, f"{instance_id} {status}")
        return found


def page_sig(url: str) -> str:
    """The capability in a step page's link."""
    return parse_qs(urlsplit(url).query)["sig"][0]


async def submit_step(url: str, fields: dict[str, str], action: str = "complete") -> httpx.Response:
    """Post a step page's form as a browser would (form-encoded, no redirects followed)."""
    parts = urlsplit(url)
    async with httpx.AsyncClient(trust_env=False, timeout=15) as c:
        return await c.post(
            f"{parts.scheme}://{parts.netloc}{parts.path}",
            data={"sig": page_sig(url), "action": action, **fields},
        )


def copy_samples(to: Path) -> Path:
    to.mkdir(parents=True, exist_ok=True)
    for path in SAMPLES.glob("*.bpmn"):
        shutil.copy(path, to / path.name)
    return to
