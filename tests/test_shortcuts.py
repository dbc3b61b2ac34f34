"""The gate's shortcuts (``server.shortcuts``): the task routes matched before
Starlette's router take exactly the requests the router would give them, and answer
errors as the router's layers would (the app's handlers, a 500 for anything else)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route

from server.api import tasks
from server.api.common import JSON
from server.app import create_app
from server.errors import NotFound
from server.shortcuts import Shortcuts
from tests.support.app import PRODUCER_KEY, make_settings, serve, uvicorn_serving
from tests.support.processes import free_port
from tests.support.tasks import assert_error

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Paths on and around the task routes: ids that look like a fixed segment ("batch"),
# empty and slashed segments, trailing slashes, encoded characters, near misses.
PATHS = [
    "/api/v1/tasks",
    "/api/v1/tasks/",
    "/api/v1/tasks/batch",
    "/api/v1/tasks/batch/",
    "/api/v1/tasksx",
    "/api/v1/task",
    "/api/v1/tasks//complete",
    "/api/v1/tasks/a/b/complete",
    "/api/v1/tasks/batch/complete",
    "/api/v1/tasks/t 1/complete",
    "/api/v1/tasks/t-1/complete/",
    "/api/v1/tasks/t-1/complete\n",
    "/api/v1/tasks/t-1/completed",
    "/api/v1/tasks/t-1/xcomplete",
    "/api/v1/tasks/t-1/history",
    "/api/v1/tasks/t-1",
    "/api/v1/tasks/t-1/",
    "/api/v1/tasks/t-1/nope",
    "/api/v1/me",
    "/",
]


def _shortcuts(app: Starlette) -> Shortcuts:
    (found,) = [m.kwargs["shortcuts"] for m in app.user_middleware if "shortcuts" in m.kwargs]
    assert isinstance(found, Shortcuts)
    return found


def _scope(method: str, path: str, root_path: str = "") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": root_path, "headers": []}


def _router_choice(routes: list[BaseRoute], scope: dict[str, Any]) -> BaseRoute | None:
    """The route Starlette's router runs for ``scope`` (its first full match)."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def _samples() -> list[tuple[str, str]]:
    """Every shortcut's own requests (its methods, its path with a few ids) and the
    paths around them with every method."""
    out = [(m, p) for m in METHODS for p in PATHS]
    for route in tasks.routes:
        for method in route.methods or ():
            for tid in ("t-1", "batch", "complete", "a%2Fb", "ü"):
                out.append((method, route.path.replace("{task_id}", tid)))
    return out


def test_shortcuts_take_the_requests_the_router_gives_the_same_routes(sqlite_url: str) -> None:
    app = create_app(make_settings(sqlite_url))
    shortcuts = _shortcuts(app)
    assert list(shortcuts.routes) == list(tasks.routes)
    taken = 0
    for method, path in _samples():
        scope = _scope(method, path)
        hit = shortcuts.match(scope)
        if hit is None:
            continue  # the router decides, as without shortcuts
        taken += 1
        route, params = hit[0].route, hit[1]
        assert _router_choice(app.router.routes, scope) is route, (method, path)
        _, child = route.matches(scope)
        assert params == child["path_params"], (method, path)
    assert taken >= len(tasks.routes)


def test_shortcuts_leave_to_the_router_what_they_do_not_take(sqlite_url: str) -> None:
    shortcuts = _shortcuts(create_app(make_settings(sqlite_url)))
    assert shortcuts.match(_scope("POST", "/api/v1/tasks")) is not None
    assert shortcuts.match(_scope("POST", "/api/v1/tasks", root_path="/under")) is None
    for method, path in [
        ("GET", "/api/v1/tasks"),  # a 405 from the router
        ("DELETE", "/api/v1/tasks/t-1/complete"),
        ("POST", "/api/v1/tasks/"),  # the router's redirect or 404
        ("POST", "/api/v1/tasks/t-1/complete/"),
        ("POST", "/api/v1/tasks/a/b/complete"),
        ("POST", "/api/v1/tasks//complete"),
        ("GET", "/api/v1/me"),
    ]:
        assert shortcuts.match(_scope(method, path)) is None, (method, path)


def test_a_route_a_shortcut_cannot_match_faithfully_is_refused() -> None:
    async def endpoint(request: Request) -> Response:
        return JSON({})

    for path in ["/a/{x}/{y}", "/a/{x:int}", "/a{x}"]:
        with pytest.raises(ValueError):
            Shortcuts([Route(path, endpoint, methods=["GET"])], {})


# ---------------------------------------------------------------- errors, served


async def _not_found(request: Request) -> Response:
    raise NotFound(f"thing {request.path_params['name']!r} not found", code="thing_not_found")


async def _broken(request: Request) -> Response:
    raise RuntimeError("a bug")


@pytest.fixture
async def served(sqlite_url: str) -> AsyncIterator[str]:
    """The app with two more shortcut routes whose endpoints raise."""
    app = create_app(make_settings(sqlite_url))
    extra = [
        Route("/api/v1/shortcut-test/{name}/missing", _not_found, methods=["POST"]),
        Route("/api/v1/shortcut-test/broken", _broken, methods=["POST"]),
    ]
    app.router.routes[:0] = extra
    taken = _shortcuts(app)
    for m in app.user_middleware:
        if "shortcuts" in m.kwargs:
            m.kwargs["shortcuts"] = Shortcuts([*extra, *taken.routes], taken.handlers)
    port = free_port()
    async with uvicorn_serving(app, port):
        yield f"http://127.0.0.1:{port}"


async def test_a_shortcut_answers_an_error_with_the_apps_handlers_and_a_bug_with_500(
    served: str,
) -> None:
    headers = {"Authorization": f"Bearer {PRODUCER_KEY}", "X-Request-ID": "short-1"}
    async with httpx.AsyncClient(base_url=served, headers=headers) as c:
        missing = await c.post("/api/v1/shortcut-test/x-1/missing")
        broken = await c.post("/api/v1/shortcut-test/broken")
        wrong_method = await c.get("/api/v1/shortcut-test/x-1/missing")
    assert_error(missing, 404, "thing_not_found")
    assert missing.json()["error"]["message"] == "thing 'x-1' not found"
    assert missing.headers["x-request-id"] == "short-1"
    assert missing.headers["cache-control"] == "no-store"
    assert missing.headers["x-content-type-options"] == "nosniff"
    assert_error(broken, 500, "internal_error")
    assert "a bug" not in broken.text and "Traceback" not in broken.text
    assert_error(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["allow"] == "POST"


async def test_task_calls_on_the_shortcut_keep_their_answers(served: str) -> None:
    """The 405 of another method on a task path comes from the router, with ``Allow``;
    a bad body on the shortcut is the usual 422 with every header of the edge."""
    headers = {"Authorization": f"Bearer {PRODUCER_KEY}"}
    async with httpx.AsyncClient(base_url=served, headers=headers) as c:
        put = await c.put("/api/v1/tasks/t-1/complete")
        bad = await c.post("/api/v1/tasks", json={"id": "t-1", "owner": "alice"})
        unknown = await c.post("/api/v1/tasks/nope/complete")
    assert_error(put, 405, "method_not_allowed")
    assert put.headers["allow"] == "POST"
    assert_error(bad, 422, "invalid")
    assert {e["loc"] for e in bad.json()["error"]["details"]["errors"]} == {"title"}
    for resp in (put, bad, unknown):
        assert len(resp.headers["x-request-id"]) == 16
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["cache-control"] == "no-store"
    assert_error(unknown, 404, "task_not_found")


# ---------------------------------------------------------------- the gate's checks first


async def _answer_to(base_url: str, head: bytes, sent: bytes) -> bytes:
    """What the server answers to ``head`` and then ``sent`` of the body (no more: the
    connection stays open, so only the gate, which need not wait for the rest, answers
    413; an endpoint reading the body would wait for it)."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(head + sent)
        await writer.drain()
        return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


async def test_a_body_over_the_limit_on_a_shortcut_is_413_before_it_is_all_in(
    sqlite_url: str,
) -> None:
    settings = make_settings(sqlite_url, max_body_bytes=1000)
    auth = f"Authorization: Bearer {PRODUCER_KEY}\r\n".encode()
    async with serve(settings) as live:
        declared = await _answer_to(
            live.base_url,
            b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\n" + auth + b"Content-Length: 5000\r\n\r\n",
            b'{"id": "t-1", ',
        )
        streamed = await _answer_to(
            live.base_url,
            b"POST /api/v1/tasks/t-1/complete HTTP/1.1\r\nHost: x\r\n"
            + auth
            + b"Transfer-Encoding: chunked\r\n\r\n",
            b"400\r\n" + b"x" * 1024 + b"\r\n",  # one chunk over the limit, no last chunk
        )
        async with live.producer() as c:
            missing = await c.get("/api/v1/tasks/t-1")
    assert declared.startswith(b"HTTP/1.1 413 "), declared
    assert streamed.startswith(b"HTTP/1.1 413 "), streamed
    assert missing.status_code == 404
