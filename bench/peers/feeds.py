"""What both peers share: tokens, the producer key, and per-owner feeds in memory."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson


def secret() -> str:
    return os.environ["TASKBELL_SECRET"]


def producer_keys() -> set[str]:
    return {k for k in os.environ.get("TASKBELL_PRODUCER_KEYS", "").split(",") if k}


def user_of(token: str, key: str) -> str | None:
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"])
    except jwt.PyJWTError:
        return None
    sub = claims.get("sub")
    return sub if isinstance(sub, str) else None


@dataclass
class Feed:
    seq: int = 0
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)


Publish = Callable[[str, bytes], None]


class Feeds:
    """Per owner: seq, running tasks. ``apply`` returns (status, owner, message)."""

    def __init__(self) -> None:
        self.feeds: dict[str, Feed] = {}
        self.owner_of: dict[str, str] = {}

    def snapshot(self, owner: str) -> bytes:
        feed = self.feeds.get(owner) or Feed()
        return orjson.dumps(
            {
                "type": "snapshot",
                "seq": feed.seq,
                "count": len(feed.tasks),
                "tasks": list(feed.tasks.values()),
            }
        )

    def create(self, task: dict[str, Any]) -> tuple[int, str, bytes | None]:
        owner, task_id = task.get("owner"), task.get("id")
        if not isinstance(owner, str) or not isinstance(task_id, str):
            return 422, "", None
        if task_id in self.owner_of:
            return 409, owner, None
        feed = self.feeds.setdefault(owner, Feed())
        feed.seq += 1
        feed.tasks[task_id] = task
        self.owner_of[task_id] = owner
        message = {"type": "task.added", "seq": feed.seq, "count": len(feed.tasks), "task": task}
        return 201, owner, orjson.dumps(message)

    def complete(self, task_id: str) -> tuple[int, str, bytes | None]:
        owner = self.owner_of.pop(task_id, None)
        if owner is None:
            return 404, "", None
        feed = self.feeds[owner]
        task = feed.tasks.pop(task_id)
        feed.seq += 1
        message = {
            "type": "task.removed",
            "seq": feed.seq,
            "count": len(feed.tasks),
            "task": {"id": task["id"]},
            "reason": "completed",
        }
        return 200, owner, orjson.dumps(message)

    def batch(self, body: Any) -> tuple[list[dict[str, int]], list[tuple[str, bytes]]]:
        results: list[dict[str, int]] = []
        out: list[tuple[str, bytes]] = []
        for op in body.get("ops", []) if isinstance(body, dict) else []:
            if op.get("op") == "create":
                status, owner, message = self.create(op.get("task") or {})
            else:
                status, owner, message = self.complete(str(op.get("id")))
            results.append({"status": status})
            if message is not None:
                out.append((owner, message))
        return results, out
