"""A scripted ``/ws`` for the panel's side of several feeds (docs/protocol.md and the
feeds design): the test plays the server, frame by frame, through the browser's own
WebSocket interception, so each rule of the protocol (per-feed seq and count, resume with
``since_feeds``, a gap in one feed, ``feed.joined`` / ``feed.left``, heartbeats) is
checked exactly, independent of what a server build already sends."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import Page, WebSocketRoute

Message = dict[str, Any]


def task(
    task_id: str,
    *,
    owner: str | None,
    role: str | None = None,
    title: str | None = None,
    minutes_ago: int = 1,
) -> Message:
    at = datetime.now(UTC).replace(microsecond=0)
    stamp = datetime.fromtimestamp(at.timestamp() - 60 * minutes_ago, UTC).isoformat()
    return {
        "id": task_id,
        "owner": owner,
        "role": role,
        "acted_by": None,
        "title": title or f"Task {task_id}",
        "kind": "activity",
        "status": "running",
        "process": {"instance_id": f"p-{task_id}", "name": "Invoice approval"},
        "record": {"entity": "Account", "id": "acc-1", "title": "Acme"},
        "url": f"https://crm.example/pages/{task_id}",
        "postponed_until": None,
        "created_at": stamp,
        "updated_at": stamp,
    }


def position(seq: int, count: int) -> Message:
    return {"seq": seq, "count": count}


@dataclass
class Socket:
    route: WebSocketRoute
    received: list[Message] = field(default_factory=list)

    def send(self, message: Message) -> None:
        self.route.send(json.dumps(message))

    @property
    def auth(self) -> Message:
        return self.received[0]


@dataclass
class ScriptedServer:
    """Every connection the page opens to ``/ws``, in order; ``on_auth`` answers the auth
    frame (a snapshot, or a replay and ``synced``)."""

    on_auth: Any
    sockets: list[Socket] = field(default_factory=list)

    def install(self, page: Page) -> None:
        page.route_web_socket("**/ws", self._accept)

    def _accept(self, route: WebSocketRoute) -> None:
        sock = Socket(route)
        self.sockets.append(sock)

        def arrived(message: str | bytes) -> None:
            frame: Message = json.loads(message)
            sock.received.append(frame)
            if frame.get("type") == "auth" and len(sock.received) == 1:
                for answer in self.on_auth(sock, frame):
                    sock.send(answer)
            elif frame.get("type") == "ping":
                sock.send({"type": "pong"})

        route.on_message(arrived)

    @property
    def last(self) -> Socket:
        return self.sockets[-1]
