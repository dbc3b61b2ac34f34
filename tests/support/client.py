"""A checking WebSocket client: applies a feed like the panel does and asserts the
contract on every message (contiguous seqs, count sent with every seq)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class FeedClient:
    """One socket of one owner. ``tasks``/``count``/``seq`` mirror what the panel shows."""

    def __init__(self, ws_url: str, token: str) -> None:
        self.ws_url = ws_url
        self.token = token
        self.ws: ClientConnection | None = None
        self.seq = 0
        self.count = 0
        self.tasks: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.counts_by_seq: dict[int, int] = {}
        self.heartbeats: list[dict[str, Any]] = []
        self.first: dict[str, Any] | None = None

    async def connect(self, since: int | None = None, **kw: Any) -> dict[str, Any]:
        """Connect and authenticate; returns the snapshot or the synced message."""
        self.ws = await connect(self.ws_url, **kw)
        auth: dict[str, Any] = {"type": "auth", "token": self.token}
        if since is not None:
            auth["since"] = since
        await self.ws.send(orjson.dumps(auth).decode())
        while True:
            msg = await self.recv()
            if msg["type"] in ("snapshot", "synced"):
                self.first = msg
                return msg

    async def recv(self, timeout: float = 10.0, *, heartbeats: bool = False) -> dict[str, Any]:
        """The next message, applied and checked. The server's heartbeat pings (checked
        and kept in ``heartbeats``) are passed over unless ``heartbeats`` is true: they
        come whenever the owner's turn in the round is, not in answer to anything."""
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), max(0.01, deadline - loop.time()))
            msg: dict[str, Any] = orjson.loads(raw)
            self.apply(msg)
            if heartbeats or not (msg["type"] == "ping" and "feeds" in msg):
                return msg

    def apply(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "snapshot":
            self.tasks = {t["id"]: t for t in msg["tasks"]}
            self.seq, self.count = msg["seq"], msg["count"]
            assert len(self.tasks) == self.count, msg
        elif kind == "synced":
            assert msg["seq"] == self.seq, (msg, self.seq)
            assert msg["count"] == self.count
        elif kind in ("task.added", "task.updated", "task.removed"):
            assert msg["seq"] == self.seq + 1, f"gap or repeat: {self.seq} -> {msg['seq']}"
            self.seq = msg["seq"]
            self.count = msg["count"]
            self.counts_by_seq[self.seq] = self.count
            task = msg["task"]
            if kind == "task.removed":
                self.tasks.pop(task["id"], None)
            else:
                self.tasks[task["id"]] = task
            self.events.append(msg)
            assert len(self.tasks) == self.count, (msg, sorted(self.tasks))
        elif kind == "ping" and "feeds" in msg:
            self.heartbeats.append(msg)
            (pos,) = msg["feeds"].values()
            assert (pos["seq"], pos["count"]) == (self.seq, self.count), (msg, self.seq)

    async def until_seq(self, seq: int, timeout: float = 10.0) -> None:
        """Read until this client has applied ``seq``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.seq < seq:
            await self.recv(max(0.01, deadline - loop.time()))

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        assert self.ws is not None
        if isinstance(message, dict):
            message = orjson.dumps(message).decode()
        await self.ws.send(message)

    async def before_pong(self, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Send a ping and read until its pong: what the server had queued on this socket
        before it (the pong comes after everything already queued)."""
        await self.send({"type": "ping"})
        before = []
        while (msg := await self.recv(timeout))["type"] != "pong":
            before.append(msg)
        return before

    async def closed_with(self, timeout: float = 10.0) -> tuple[int | None, str]:
        """Read until the server closes; returns (code, reason)."""
        assert self.ws is not None
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code, rcvd.reason) if rcvd else (None, "")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def __aenter__(self) -> FeedClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
