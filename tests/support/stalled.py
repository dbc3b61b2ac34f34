"""A WebSocket client that stops reading, for real: a raw socket with a tiny receive
buffer driven by the websockets Sans-I/O protocol, so nothing reads on its behalf."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import orjson
from websockets.client import ClientProtocol
from websockets.frames import Close
from websockets.uri import parse_uri

from tests.support.app import Live
from tests.support.tasks import task_body


class StalledClient:
    def __init__(self, ws_url: str, token: str) -> None:
        self.uri = parse_uri(ws_url)
        self.token = token
        self.protocol = ClientProtocol(self.uri, max_size=None)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        self.sock.setblocking(False)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        for chunk in self.protocol.data_to_send():
            if chunk:
                await loop.sock_sendall(self.sock, chunk)

    async def connect_and_stall(self) -> None:
        """Handshake, authenticate, read the first message, then read nothing more."""
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, (self.uri.host, self.uri.port))
        self.protocol.send_request(self.protocol.connect())
        await self._flush()
        got_first = False
        authed = False
        while not got_first:
            data = await loop.sock_recv(self.sock, 1024)
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if not authed:
                    authed = True  # the handshake response
                    auth = {"type": "auth", "token": self.token}
                    self.protocol.send_text(orjson.dumps(auth))
                    await self._flush()
                else:
                    got_first = True
                    del event

    async def read_until_close(self, timeout: float = 30.0) -> tuple[int | None, str]:
        """Resume reading; return the close code and reason the server sent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            data = await asyncio.wait_for(
                loop.sock_recv(self.sock, 65536), max(0.01, deadline - loop.time())
            )
            if not data:
                self.protocol.receive_eof()
            else:
                self.protocol.receive_data(data)
            await self._flush()
            self.protocol.events_received()
            close: Close | None = self.protocol.close_rcvd
            if close is not None:
                return close.code, close.reason
            if not data:
                return None, ""

    def close(self) -> None:
        self.sock.close()


async def flood_until_too_slow(
    live: Live,
    prefix: str = "t",
    each_batch: Callable[[int], Awaitable[None]] | None = None,
) -> list[str]:
    """Create batches of 50 big tasks for alice until one of the server's sockets is
    closed 4008 (how many that takes depends on the machine's TCP buffer sizes); the
    ids created, in order. ``each_batch(sent)`` runs after every batch (e.g. a fast
    reader catching up)."""
    created: list[str] = []
    async with live.producer() as p:
        for b in range(400):
            ids = [f"{prefix}{b}-{i}" for i in range(50)]
            ops = [{"op": "create", "task": task_body(i, title="x" * 1000)} for i in ids]
            resp = await p.post("/api/v1/tasks/batch", json={"ops": ops})
            assert resp.status_code == 200, resp.text
            created += ids
            if each_batch is not None:
                await each_batch(len(created))
            if any(c.close_code == 4008 for c in live.parts.hub.connections()):
                break
    return created
