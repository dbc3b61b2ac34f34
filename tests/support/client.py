"""A checking WebSocket client: applies feeds like the panel does and asserts the
contract on every message (contiguous seqs per feed, count sent with every seq)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class FeedClient:
    """One socket of one person. ``tasks``/``count``/``seq`` mirror what the panel shows
    of the own feed; ``others`` holds every other followed feed (its seq, count, tasks).
    The own feed is the first in the snapshot's or synced's ``feeds``; an event without
    a ``feed`` is the own feed's."""

    def __init__(self, ws_url: str, token: str) -> None:
        self.ws_url = ws_url
        self.token = token
        self.ws: ClientConnection | None = None
        self.seq = 0
        self.count = 0
        self.postponed = 0  # the own feed's counts.postponed, as last given
        self.tasks: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.counts_by_seq: dict[int, int] = {}
        self.heartbeats: list[dict[str, Any]] = []
        self.first: dict[str, Any] | None = None
        self.own: str | None = None
        self.others: dict[str, OtherFeed] = {}

    async def connect(
        self, since: int | None = None, since_feeds: dict[str, int] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Connect and authenticate; returns the snapshot or the synced message."""
        self.ws = await connect(self.ws_url, **kw)
        auth: dict[str, Any] = {"type": "auth", "token": self.token}
        if since is not None:
            auth["since"] = since
        if since_feeds is not None:
            auth["since_feeds"] = since_feeds
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

    def _learn_feeds(self, msg: dict[str, Any]) -> None:
        feeds: dict[str, dict[str, int]] = msg.get("feeds", {})
        if feeds:
            self.own = next(iter(feeds))
            assert (feeds[self.own]["seq"], feeds[self.own]["count"]) == (msg["seq"], msg["count"])

    def apply(self, msg: dict[str, Any]) -> None:
        _check_counts(msg)
        kind = msg["type"]
        feed = msg.get("feed")
        if kind.startswith("feed.") or (feed not in (None, self.own) and self.own is not None):
            self._apply_other(msg)
            return
        if kind == "snapshot":
            self._learn_feeds(msg)
            own = self.own
            mine = [t for t in msg["tasks"] if own is None or _feed_of(t) in (own, None)]
            self.tasks = {t["id"]: t for t in mine}
            self.seq, self.count = msg["seq"], msg["count"]
            self.postponed = msg["counts"]["postponed"]
            assert len(self.tasks) == self.count, msg
            self.others = {
                f: OtherFeed(p["seq"], p["count"], p["counts"]["postponed"])
                for f, p in msg.get("feeds", {}).items()
            }
            self.others.pop(own or "", None)
            for t in msg["tasks"]:
                if own is not None and (f := _feed_of(t)) not in (own, None):
                    self.others[f].tasks[t["id"]] = t
        elif kind == "synced":
            self._learn_feeds(msg)
            assert msg["seq"] == self.seq, (msg, self.seq)
            assert msg["count"] == self.count
            assert msg["counts"]["postponed"] == self.postponed, (msg, self.postponed)
            for f, p in msg.get("feeds", {}).items():
                if f != self.own:
                    other = self.others.setdefault(f, OtherFeed(p["seq"], p["count"]))
                    assert (other.seq, other.count) == (p["seq"], p["count"]), (msg, f)
        elif kind in ("task.added", "task.updated", "task.removed"):
            assert msg["seq"] == self.seq + 1, f"gap or repeat: {self.seq} -> {msg['seq']}"
            self.seq = msg["seq"]
            self.count = msg["count"]
            self.postponed = msg["counts"]["postponed"]
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
            for f, pos in msg["feeds"].items():
                if f == self.own or self.own is None:
                    assert (pos["seq"], pos["count"]) == (self.seq, self.count), (msg, self.seq)
                    assert pos["counts"]["postponed"] == self.postponed, (msg, self.postponed)
                else:
                    other = self.others[f]
                    assert (pos["seq"], pos["count"]) == (other.seq, other.count), (msg, f)
                    assert pos["counts"]["postponed"] == other.postponed, (msg, f)

    def _apply_other(self, msg: dict[str, Any]) -> None:
        kind, feed = msg["type"], msg["feed"]
        if kind == "feed.joined":
            assert feed not in self.others, f"joined {feed} twice"
            other = self.others[feed] = OtherFeed(
                msg["seq"], msg["count"], msg["counts"]["postponed"]
            )
            other.tasks = {t["id"]: t for t in msg["tasks"]}
            return
        if kind == "feed.left":
            assert self.others.pop(feed, None) is not None, f"left {feed} never joined"
            return
        other = self.others[feed]
        assert msg["seq"] == other.seq + 1, f"{feed}: gap or repeat {other.seq} -> {msg['seq']}"
        other.seq, other.count = msg["seq"], msg["count"]
        other.postponed = msg["counts"]["postponed"]
        if kind == "task.removed":
            other.tasks.pop(msg["task"]["id"], None)
        else:
            other.tasks[msg["task"]["id"]] = msg["task"]
        self.events.append(msg)

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


class OtherFeed:
    """A followed feed other than the own one, as a client sees it."""

    def __init__(self, seq: int, count: int, postponed: int = 0) -> None:
        self.seq = seq
        self.count = count
        self.postponed = postponed
        self.tasks: dict[str, dict[str, Any]] = {}


def _check_counts(msg: dict[str, Any]) -> None:
    """Every message (and feed position) carrying a ``count`` carries ``counts`` beside
    it, whose ``running`` is that count (docs/protocol.md, "Live counts")."""
    positions = (
        [msg, *msg.get("feeds", {}).values()] if isinstance(msg.get("feeds"), dict) else [msg]
    )
    for pos in positions:
        # (``seen``'s feeds are marks, plain seqs: no positions.)
        if isinstance(pos, dict) and "count" in pos:
            counts = pos.get("counts")
            assert isinstance(counts, dict) and set(counts) == {"running", "postponed"}, msg
            assert counts["running"] == pos["count"], msg
            assert isinstance(counts["postponed"], int) and counts["postponed"] >= 0, msg


def _feed_of(task: dict[str, Any]) -> str | None:
    """The feed a snapshot's task belongs to (docs/protocol.md: owner, else role)."""
    if task.get("owner"):
        return f"user:{task['owner']}"
    role = task.get("role")
    return f"role:{role}" if role else None
