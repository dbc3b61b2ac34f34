"""The app under test, served for real: settings with the test secret and producer key,
user tokens, and a real uvicorn serving the app in the test's event loop on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from server import serving
from server.api.common import Parts
from server.app import create_app
from server.auth import mint_token
from server.feeds import DEFAULT_TENANT, user_key
from server.settings import Settings

SECRET = "test-secret-0123456789abcdef0123456789abcdef"
PRODUCER_KEY = "pk-test-producer"


def make_settings(database_url: str, redis_url: str | None = None, **kw: object) -> Settings:
    base = Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret=SECRET,
        producer_keys=frozenset({PRODUCER_KEY}),
        sweep_interval_s=0.5,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def key(user: str, tenant: str = DEFAULT_TENANT) -> str:
    """The internal key of ``user``'s own feed (what ``Reads.counter`` takes)."""
    return user_key(tenant, user)


def token(user: str, ttl: int = 3600) -> str:
    return mint_token(SECRET, user, ttl)


CLIENT_TIMEOUT_S = 30.0


@dataclass
class Live:
    """A running server: its settings, URLs and (in-process) parts."""

    settings: Settings
    base_url: str
    ws_url: str
    app: Starlette

    @property
    def parts(self) -> Parts:
        p: Parts = self.app.state.parts
        return p

    # httpx's 5 s default is too short on a loaded CI machine; a hang is still caught
    # by pytest-timeout.
    def producer(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {PRODUCER_KEY}"},
            timeout=CLIENT_TIMEOUT_S,
        )

    def person(self, user: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token(user)}"},
            timeout=CLIENT_TIMEOUT_S,
        )


async def _serving(server: uvicorn.Server, sockets: list[socket.socket] | None) -> None:
    # (A SystemExit leaves a task at once and stops the whole event loop, not just it.)
    try:
        await server.serve(sockets=sockets)
    except SystemExit as exc:
        raise RuntimeError(f"uvicorn did not start (exit status {exc.code})") from None


@contextlib.asynccontextmanager
async def uvicorn_serving(
    app: ASGIApp, port: int, *, stop_timeout: float = 15.0, **config: Any
) -> AsyncIterator[uvicorn.Server]:
    """``app`` under a real uvicorn in this event loop on ``port`` until the block ends
    (``config``: more ``uvicorn.Config`` options). ``port`` 0: a socket bound here to a
    port the kernel picks, handed to uvicorn, so no other process can take the port
    between choosing and binding it (``server.config.port`` says which). Raises what
    start-up raised (uvicorn's own ``SystemExit`` as a ``RuntimeError``: a
    ``BaseException`` would also break the test runner's event loop for every later
    test)."""
    sock: socket.socket | None = None
    if port == 0:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options: dict[str, Any] = {"host": "127.0.0.1", "log_level": "warning", "lifespan": "on"}
    server = uvicorn.Server(uvicorn.Config(app, port=port, **{**options, **config}))
    task = asyncio.create_task(_serving(server, None if sock is None else [sock]))
    for _ in range(400):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    assert server.started, "uvicorn did not start"
    try:
        yield server
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, stop_timeout)
        if sock is not None:
            sock.close()


@contextlib.asynccontextmanager
async def serve(settings: Settings, **overrides: Any) -> AsyncIterator[Live]:
    """Run the app under a real uvicorn in this event loop until the block ends, as
    ``python -m server`` serves it (``server.serving``; ``overrides``: other
    ``uvicorn.Config`` options, e.g. ``ws="websockets-sansio"`` for the ASGI path)."""
    app = create_app(settings)
    config = {**serving.options(app, settings), "host": "127.0.0.1", **overrides}
    config.pop("port")
    async with uvicorn_serving(app, 0, **config) as server:
        port = server.config.port
        yield Live(settings, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws", app)
