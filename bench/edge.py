"""The HTTP edge alone, in process: server CPU per request through everything in front
of an endpoint (the app's middleware, routing, authentication, body, JSON), no sockets.

    python -m bench.edge                       # this tree
    PYTHONPATH=/path/to/other/checkout python bench/edge.py   # another tree's server

The app is ``create_app`` with its lifespan (a fresh SQLite file, the in-process
broker), the access log on and written to a file as in production, and endpoints added
where the task routes are in the router that do what the real ones do before their
first database call: ``POST /api/v1/bench-create`` (producer key, a task body parsed
and validated), ``POST /api/v1/bench-tasks/{id}/complete`` (producer key, the path id,
no body) and ``GET /api/v1/bench-me`` (a user token, verified and checked for
revocation). In a tree with ``server.shortcuts`` the two producer calls are among the
gate's shortcuts, as the real task routes are, and one more case sends the create
through the router (``/api/v1/bench-routed``) to show what the shortcut saves.
Requests are ASGI calls straight into the app, one after another; the figure is process
CPU time per request, best of ``--rounds`` (the cases take turns in each round).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.common import JSON, actor, body, producer, user
from server.api.tasks import task_id
from server.app import create_app
from server.auth import mint_token
from server.logs import JsonFormatter
from server.settings import Settings
from server.wire import TaskCreate, parse_body

SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
KEY = "bench-producer-key"
TASK = (
    b'{"id": "t-000123", "owner": "u00042", "title": "Approve invoice 4711: due today",'
    b' "kind": "activity", "process": {"instance_id": "p-1", "name": "Invoices"},'
    b' "record": {"entity": "invoice", "id": "4711", "title": "Invoice 4711"},'
    b' "url": "https://erp.example.com/invoices/4711"}'
)


async def bench_create(request: Request) -> Response:
    producer(request)
    task = parse_body(await body(request), TaskCreate)
    return JSON({"id": task.id}, status_code=201)


async def bench_complete(request: Request) -> Response:
    who = actor(request)
    tid = task_id(request)
    if (await body(request)).strip() not in (b"", b"{}"):
        raise AssertionError("no body expected")
    return JSON({"id": tid, "by": who.tenant})


async def bench_me(request: Request) -> Response:
    return JSON({"user": user(request).id})


def scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
        "extensions": {},
    }


async def call(app: Any, request: dict[str, Any], content: bytes) -> int:
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)  # a client that stays connected
        sent = True
        return {"type": "http.request", "body": content, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(request), receive, send)
    return status


async def run(n: int, rounds: int, only: str = "") -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="taskbell-edge-"))
    handler = logging.FileHandler(work / "server.log")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{work}/bench.db",
        secret=SECRET,
        producer_keys=frozenset({KEY}),
        rate_user=1e9,  # on (the default is 20/s), but never in the way
        rate_producer=1e9,
    )
    app = create_app(settings)
    hot = [
        Route("/api/v1/bench-create", bench_create, methods=["POST"]),
        Route("/api/v1/bench-tasks/{task_id}/complete", bench_complete, methods=["POST"]),
    ]
    routed = Route("/api/v1/bench-routed", bench_create, methods=["POST"])
    at = next(
        i for i, r in enumerate(app.router.routes) if getattr(r, "path", "") == "/api/v1/tasks"
    )
    app.router.routes[at:at] = [*hot, routed, Route("/api/v1/bench-me", bench_me, methods=["GET"])]
    shortcut = _add_shortcuts(app, hot)
    token = mint_token(SECRET, "alice", 3600).encode()
    producer_headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"authorization", b"Bearer " + KEY.encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(TASK)).encode()),
    ]
    cases = {
        "POST create (producer key, body)": (
            scope("POST", "/api/v1/bench-create", producer_headers),
            TASK,
            201,
        ),
        "POST complete (producer key, path id, no body)": (
            scope(
                "POST",
                "/api/v1/bench-tasks/t-000123/complete",
                [(b"host", b"127.0.0.1:8000"), (b"authorization", b"Bearer " + KEY.encode())],
            ),
            b"",
            200,
        ),
        "GET me (user token)": (
            scope(
                "GET",
                "/api/v1/bench-me",
                [(b"host", b"127.0.0.1:8000"), (b"authorization", b"Bearer " + token)],
            ),
            b"",
            200,
        ),
    }
    if shortcut:
        cases["POST create through the router (no shortcut)"] = (
            scope("POST", "/api/v1/bench-routed", producer_headers),
            TASK,
            201,
        )
    chosen = {name: case for name, case in cases.items() if only in name}
    best = dict.fromkeys(chosen, float("inf"))
    async with app.router.lifespan_context(app):
        for name, (request, content, expected) in chosen.items():
            got = await call(app, request, content)
            assert got == expected, f"{name}: {got}"
        # The cases take turns within each round, so that a busy spell of the machine
        # does not fall on one case only.
        for _ in range(rounds):
            for name, (request, content, _expected) in chosen.items():
                began = time.process_time()
                for _ in range(n):
                    await call(app, request, content)
                best[name] = min(best[name], (time.process_time() - began) / n)
    return {name: seconds * 1e6 for name, seconds in best.items()}


def _add_shortcuts(app: Any, routes: list[Route]) -> bool:
    """Put ``routes`` among the gate's shortcuts (before the app first runs, when the
    middleware is built); False for a tree without them."""
    for middleware in app.user_middleware:
        taken = middleware.kwargs.get("shortcuts")
        if taken is not None:
            from server.shortcuts import Shortcuts

            middleware.kwargs["shortcuts"] = Shortcuts([*routes, *taken.routes], taken.handlers)
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=5000, help="requests per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--only", default="", help="only the cases whose name holds this text")
    args = p.parse_args(argv)
    for name, us in asyncio.run(run(args.requests, args.rounds, args.only)).items():
        print(f"{us:8.1f} µs CPU per request  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
