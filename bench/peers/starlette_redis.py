"""Peer: Starlette + redis pub/sub fan-out that stores nothing (``python -m
bench.peers.starlette_redis``; HOST, PORT, REDIS_URL, TASKBELL_SECRET,
TASKBELL_PRODUCER_KEYS from the environment, like the server)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.peers.feeds import Feeds, producer_keys, secret, user_of

PREFIX = "peer:feed:"

feeds = Feeds()
sockets: dict[str, set[WebSocket]] = defaultdict(set)
KEYS = producer_keys()
SECRET = secret()
redis_url = os.environ.get("REDIS_URL") or ""
pub: Redis | None = None


async def fan_out(owner: str, message: bytes) -> None:
    text = message.decode()
    for ws in list(sockets.get(owner, ())):
        with contextlib.suppress(Exception):
            await ws.send_text(text)


async def publish(owner: str, message: bytes) -> None:
    """Awaited in the request, the way a first version does it."""
    if pub is None:
        await fan_out(owner, message)
    else:
        await pub.publish(PREFIX + owner, message)


async def listener() -> None:
    assert redis_url
    client = Redis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.psubscribe(PREFIX + "*")
    async for msg in pubsub.listen():
        if msg["type"] == "pmessage":
            owner = msg["channel"].decode()[len(PREFIX) :]
            await fan_out(owner, msg["data"])


def authorized(request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    return auth.removeprefix("Bearer ") in KEYS


async def healthz(request: Request) -> Response:
    return Response("ok")


async def create(request: Request) -> Response:
    if not authorized(request):
        return Response(status_code=401)
    task: Any = orjson.loads(await request.body())
    status, owner, message = feeds.create(task)
    if message is not None:
        await publish(owner, message)
    return JSONResponse({"id": task.get("id")}, status_code=status)


async def complete(request: Request) -> Response:
    if not authorized(request):
        return Response(status_code=401)
    status, owner, message = feeds.complete(request.path_params["task_id"])
    if message is not None:
        await publish(owner, message)
    return JSONResponse({}, status_code=status)


async def batch(request: Request) -> Response:
    if not authorized(request):
        return Response(status_code=401)
    results, messages = feeds.batch(orjson.loads(await request.body()))
    for owner, message in messages:
        await publish(owner, message)
    return JSONResponse({"results": results})


async def ws_endpoint(ws: WebSocket) -> None:
    await ws.accept()
    try:
        first = orjson.loads(await ws.receive_text())
        owner = user_of(str(first.get("token", "")), SECRET)
        if owner is None:
            await ws.close(4001)
            return
        await ws.send_text(feeds.snapshot(owner).decode())
        sockets[owner].add(ws)
        try:
            while True:
                msg = orjson.loads(await ws.receive_text())
                if msg.get("type") == "ping":
                    await ws.send_text('{"type":"pong"}')
        finally:
            sockets[owner].discard(ws)
    except WebSocketDisconnect:
        pass


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global pub
    tasks = []
    if redis_url:
        pub = Redis.from_url(redis_url)
        tasks.append(asyncio.create_task(listener()))
    yield
    for task in tasks:
        task.cancel()


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/api/v1/tasks", create, methods=["POST"]),
        Route("/api/v1/tasks/batch", batch, methods=["POST"]),
        Route("/api/v1/tasks/{task_id}/complete", complete, methods=["POST"]),
        WebSocketRoute("/ws", ws_endpoint),
    ],
    lifespan=lifespan,
)


def main() -> None:
    uvicorn.run(
        app,
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
    )


if __name__ == "__main__":
    main()
