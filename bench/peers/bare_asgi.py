"""Peer: a framework-free ASGI app on uvicorn with in-process fan-out, the floor of the
stack (``python -m bench.peers.bare_asgi``; same environment as the server)."""

from __future__ import annotations

import asyncio
import os
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn

from bench.peers.feeds import Feeds, producer_keys, secret, user_of

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

feeds = Feeds()
queues: dict[str, set[asyncio.Queue[bytes]]] = defaultdict(set)
KEYS = {k.encode() for k in producer_keys()}
SECRET = secret()
COMPLETE = re.compile(r"^/api/v1/tasks/([^/]+)/complete$")


def fan_out(owner: str, message: bytes) -> None:
    for queue in queues.get(owner, ()):
        queue.put_nowait(message)


async def respond(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body"):
            return body


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    path = scope["path"]
    if path == "/healthz":
        await respond(send, 200, b"ok")
        return
    auth = dict(scope["headers"]).get(b"authorization", b"")
    if auth.removeprefix(b"Bearer ") not in KEYS:
        await respond(send, 401, b"{}")
        return
    body = await read_body(receive)
    if path == "/api/v1/tasks":
        status, owner, message = feeds.create(orjson.loads(body))
        if message is not None:
            fan_out(owner, message)
        await respond(send, status, b"{}")
    elif path == "/api/v1/tasks/batch":
        results, messages = feeds.batch(orjson.loads(body))
        for owner, message in messages:
            fan_out(owner, message)
        await respond(send, 200, orjson.dumps({"results": results}))
    elif (match := COMPLETE.match(path)) is not None:
        status, owner, message = feeds.complete(match.group(1))
        if message is not None:
            fan_out(owner, message)
        await respond(send, status, b"{}")
    else:
        await respond(send, 404, b"{}")


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    first = await receive()
    if first["type"] != "websocket.receive":
        return
    owner = user_of(str(orjson.loads(first.get("text") or "{}").get("token", "")), SECRET)
    if owner is None:
        await send({"type": "websocket.close", "code": 4001})
        return
    await send({"type": "websocket.send", "text": feeds.snapshot(owner).decode()})
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    queues[owner].add(queue)

    async def writer() -> None:
        while True:
            message = await queue.get()
            await send({"type": "websocket.send", "text": message.decode()})

    task = asyncio.create_task(writer())
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if b'"ping"' in (message.get("text") or "").encode():
                queue.put_nowait(b'{"type":"pong"}')
    finally:
        queues[owner].discard(queue)
        task.cancel()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await http(scope, receive, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})


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
