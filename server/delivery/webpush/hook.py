"""Queueing pushes: every change of an owner's feed becomes one push to each of the
owner's subscriptions, through the outbox (so a push survives a restart). The payload is
the feed event trimmed to what a notification shows.

A newer push for the same task supersedes one still queued and not yet tried: only the
latest state of a task matters on a lock screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import and_, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.changes import Envelope
from server.delivery.queue import Channel, RetryPolicy, RowStatus, enqueue, new_id
from server.delivery.tables import outbox_t
from server.delivery.webpush.subscriptions import Subscriptions
from server.delivery.wire import PushPayload
from server.ops import TaskOp
from server.transitions import Outcome
from server.wire import EventMessage, dumps

TITLE_MAX = 200
URL_MAX = 1000


def push_payload(message: str) -> PushPayload:
    """The push for one feed event (the stored WebSocket message), trimmed to what a
    notification shows so it stays far below the push services' 4 KiB limit."""
    event = cast(EventMessage, orjson.loads(message))
    task = event["task"]
    url = task["url"]
    process = task["process"]
    return {
        "type": cast(Any, event["type"]),
        "seq": event["seq"],
        "count": event["count"],
        "reason": event.get("reason"),
        "task": {
            "id": task["id"],
            "title": task["title"][:TITLE_MAX],
            "status": task["status"],
            "process": process["name"] if process else None,
            "url": url if url is not None and len(url) <= URL_MAX else None,
        },
    }


_SUPERSEDE = (
    update(outbox_t)
    .where(
        and_(
            outbox_t.c.target == bindparam("b_target"),
            outbox_t.c.task_id == bindparam("b_task"),
            outbox_t.c.status == RowStatus.PENDING.value,
            outbox_t.c.attempts == 0,
        )
    )
    .values(status=RowStatus.SUPERSEDED.value)
)


class PushHook:
    """Write hook (a ``TxHook``, see ``server.changes``): queue one push per feed event
    and subscription of its owner."""

    def __init__(self, subscriptions: Subscriptions, retry: RetryPolicy) -> None:
        self.subscriptions = subscriptions
        self.retry = retry

    async def __call__(
        self,
        conn: AsyncConnection,
        changes: Sequence[tuple[TaskOp, Outcome]],
        envelopes: Sequence[Envelope],
        now: datetime,
    ) -> bool:
        if not envelopes:
            return False
        subs = await self.subscriptions.of_owners(conn, [e.key for e in envelopes])
        if not subs:
            return False
        rows: list[tuple[str, Channel, str, str, str, str]] = []
        for env in envelopes:
            payload = push_payload(env.message)
            body = dumps(payload)
            task_id = payload["task"]["id"]
            for sub in subs:
                if sub.owner == env.key:
                    rows.append(
                        (new_id("psh"), Channel.WEBPUSH, sub.id, payload["type"], task_id, body)
                    )
        if not rows:
            return False
        # Only the latest state of a task matters on a lock screen: one statement (run
        # for every new push) supersedes the older pushes of the same task not yet tried.
        await conn.execute(
            _SUPERSEDE, [{"b_target": target, "b_task": task} for _, _, target, _, task, _ in rows]
        )
        await enqueue(conn, rows, now, self.retry.max_age_s)
        return True
