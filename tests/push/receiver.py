"""A real HTTP receiver for tests (Starlette under uvicorn, in the test's loop): it
records every request and answers what its ``plan`` says."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.app import uvicorn_serving
from tests.support.processes import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


Plan = Callable[[Received, "Receiver"], Response | Awaitable[Response]]


def ok(_: Received, __: Receiver) -> Response:
    return Response(status_code=204)


@dataclass
class Receiver:
    """``url`` is where it listens; ``requests`` all it got, in order."""

    plan: Plan = ok
    port: int = field(default_factory=free_port)
    requests: list[Received] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)  # webhook ids answered with a 2xx
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def attempts(self, webhook_id: str) -> int:
        return sum(1 for r in self.requests if r.webhook_id == webhook_id)

    async def _handle(self, request: Request) -> Response:
        got = Received(request.url.path, dict(request.headers), await request.body())
        self.requests.append(got)
        self._changed.set()
        answer = self.plan(got, self)
        if not isinstance(answer, Response):
            answer = await answer
        if 200 <= answer.status_code < 300:
            self.accepted.add(got.webhook_id)
        return answer

    def app(self) -> Starlette:
        route = Route("/{path:path}", self._handle, methods=["POST", "GET", "PUT"])
        return Starlette(routes=[route])

    async def wait(self, done: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``done()`` holds (re-checked after every request)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"receiver: condition not met; got {len(self.requests)}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))


@contextlib.asynccontextmanager
async def running(receiver: Receiver) -> AsyncIterator[Receiver]:
    async with uvicorn_serving(receiver.app(), receiver.port, stop_timeout=10, lifespan="off"):
        yield receiver
