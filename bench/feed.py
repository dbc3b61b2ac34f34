"""One subscriber socket: connect, authenticate, take the snapshot, then check the feed.

``FeedCheck`` is the pure part: it is fed (type, seq, count, task id) values and counts
duplicates, out-of-order seqs and gaps. ``Subscriber`` owns the WebSocket and the
receive loop; its hot path only timestamps, parses and hands values on.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.changes import EventKey

EVENT_TYPES = frozenset({"task.added", "task.updated", "task.removed"})
_PONG = b'{"type":"pong"}'


class ProtocolViolation(Exception):
    """The server sent something the wire contract does not allow at that point."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    count: int
    tasks: int


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    seq: int
    count: int
    task_id: str


@dataclass(frozen=True, slots=True)
class Control:
    type: str


Message = Snapshot | Event | Control


def parse_message(raw: bytes | str) -> Message:
    """Turn one text frame into a typed value; raises ProtocolViolation if malformed."""
    try:
        data = orjson.loads(raw)
        kind = data["type"]
        if kind in EVENT_TYPES:
            return Event(kind, int(data["seq"]), int(data["count"]), str(data["task"]["id"]))
        if kind == "snapshot":
            return Snapshot(int(data["seq"]), int(data["count"]), len(data["tasks"]))
        return Control(str(kind))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ProtocolViolation(f"malformed message {raw[:200]!r}: {exc!r}") from exc


@dataclass(slots=True)
class FeedCheck:
    """Per-socket bookkeeping of what arrived, and whether the seqs were contiguous."""

    owner: str
    last_seq: int = 0
    snapshot_seq: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    gap_seqs: int = 0
    received: set[EventKey] = field(default_factory=set)
    seen_seqs: set[int] = field(default_factory=set)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshot_seq = self.last_seq = snapshot.seq

    def on_event(self, event: Event) -> None:
        seq = event.seq
        if seq in self.seen_seqs or seq <= self.snapshot_seq:
            self.duplicates += 1
            return
        self.seen_seqs.add(seq)
        if seq == self.last_seq + 1:
            self.last_seq = seq
        elif seq > self.last_seq + 1:
            self.gap_seqs += seq - self.last_seq - 1
            self.last_seq = seq
        else:  # fills an earlier gap: arrived late
            self.out_of_order += 1
            self.gap_seqs -= 1
        self.received.add((event.type, event.task_id))


@dataclass(slots=True)
class DeliveryLog:
    """Shared by every subscriber: latency samples and the per-(owner, seq) counts."""

    sent_ns: dict[EventKey, int]
    latencies_ns: list[int] = field(default_factory=list)
    events: int = 0
    unmatched: int = 0
    first_ns: int = 0
    last_ns: int = 0
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    count_mismatches: int = 0

    def record(self, owner: str, event: Event, received_ns: int) -> None:
        self.events += 1
        if not self.first_ns:
            self.first_ns = received_ns
        self.last_ns = received_ns
        sent = self.sent_ns.get((event.type, event.task_id))
        if sent is None:
            self.unmatched += 1
        else:
            self.latencies_ns.append(received_ns - sent)
        seen_count = self.counts.setdefault((owner, event.seq), event.count)
        if seen_count != event.count:
            self.count_mismatches += 1


@dataclass(slots=True)
class Subscriber:
    owner: str
    ws: ClientConnection
    check: FeedCheck
    negotiated_extensions: str
    close_code: int | None = None
    closed: bool = False
    violations: list[str] = field(default_factory=list)

    async def run(self, log: DeliveryLog) -> None:
        """Receive until the socket closes; never raises for a closed connection."""
        ws, check, owner = self.ws, self.check, self.owner
        try:
            while True:
                raw = await ws.recv(decode=False)
                received_ns = time.monotonic_ns()
                try:
                    message = parse_message(raw)
                except ProtocolViolation as exc:
                    self.violations.append(str(exc))
                    continue
                if isinstance(message, Event):
                    check.on_event(message)
                    log.record(owner, message, received_ns)
                elif isinstance(message, Control) and message.type == "ping":
                    await ws.send(_PONG, text=True)
                elif isinstance(message, Snapshot) or message.type != "pong":
                    self.violations.append(f"unexpected {message!r} after the snapshot")
        except ConnectionClosed as exc:
            self.closed = True
            self.close_code = exc.rcvd.code if exc.rcvd is not None else None

    async def close(self) -> None:
        await self.ws.close()


def websocket_url(base_url: str) -> str:
    if base_url.startswith("https://"):
        return "wss://" + base_url.removeprefix("https://").rstrip("/") + "/ws"
    return "ws://" + base_url.removeprefix("http://").rstrip("/") + "/ws"


async def open_subscriber(
    ws_url: str,
    token: str,
    owner: str,
    compression: Literal["deflate"] | None,
    timeout_s: float = 30.0,
) -> Subscriber:
    """Open, authenticate and wait for the snapshot.

    Raises ProtocolViolation if the first answer is not a snapshot, and the websockets
    library's exceptions (or TimeoutError) if the connection itself fails.
    """
    async with asyncio.timeout(timeout_s):
        ws = await connect(
            ws_url,
            compression=compression,
            ping_interval=None,  # browsers send no protocol pings; keep the load pure
            proxy=None,
            open_timeout=None,  # bounded by the surrounding timeout instead
            max_size=None,  # a snapshot may be large; this is not what we measure
        )
        try:
            await ws.send(orjson.dumps({"type": "auth", "token": token}), text=True)
            first = parse_message(await ws.recv(decode=False))
        except BaseException:
            await ws.close()
            raise
    if not isinstance(first, Snapshot):
        await ws.close()
        raise ProtocolViolation(f"expected a snapshot after auth, got {first!r}")
    check = FeedCheck(owner)
    check.on_snapshot(first)
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "") if ws.response else ""
    return Subscriber(owner, ws, check, extensions)


CONNECT_ERRORS = (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ProtocolViolation)
