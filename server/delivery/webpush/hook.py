"""Queueing pushes: every change of a person's own feed (``user:<id>`` of a tenant)
becomes one push to each of that person's subscriptions in that tenant, through the
outbox (so a push survives a restart). The payload is the feed event trimmed to what a
notification shows.

Role feeds push nothing: a task offered to a role is not pushed to the role's members
(it would ring every member's phone for one task); it is pushed once someone claims it
(it enters their own feed). A substitute follows the absent person's feed on a socket
but gets no pushes of it: pushes go to the feed's own person only.

A newer push for the same task supersedes one still queued and not yet tried: only the
latest state of a task matters on a lock screen. An event that moves only a feed's
postponed count (a ``task.removed`` of a task that was not running there, e.g. created
already postponed) is not pushed: there is no notification it could close.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import and_, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.changes import Envelope
from server.delivery.queue import Channel, Queued, RetryPolicy, RowStatus, enqueue, new_id
from server.delivery.tables import outbox_t
from server.delivery.webpush.subscriptions import Subscriptions
from server.delivery.wire import PushPayload
from server.feeds import USER, split_key
from server.ops import TaskOp
from server.transitions import Effect, Outcome
from server.wire import EventMessage, EventType, dumps

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
            outbox_t.c.tenant == bindparam("b_tenant"),
            outbox_t.c.target == bindparam("b_target"),
            outbox_t.c.task_id == bindparam("b_task"),
            outbox_t.c.status == RowStatus.PENDING.value,
            outbox_t.c.attempts == 0,
        )
    )
    .values(status=RowStatus.SUPERSEDED.value)
)


def counts_only(effect: Effect) -> bool:
    """Whether ``effect`` moves only the postponed count (no running task came or went)."""
    return effect.type is EventType.REMOVED and effect.delta == 0


def person_of(key: str) -> tuple[str, str] | None:
    """``(tenant, user id)`` of a person's own feed key; None for a role feed."""
    tenant, feed = split_key(key)
    if not feed.startswith(USER) or len(feed) == len(USER):
        return None
    return tenant, feed[len(USER) :]


class PushHook:
    """Write hook (a ``TxHook``, see ``server.changes``): queue one push per event of a
    person's own feed and subscription of that person (tenant and user id)."""

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
        effects = [e for _, outcome in changes for e in outcome.effects]
        people = [
            (env, who)
            for env, effect in zip(envelopes, effects, strict=True)
            if (who := person_of(env.key)) is not None and not counts_only(effect)
        ]
        if not people:
            return False
        subs = await self.subscriptions.of_people(conn, {who for _, who in people})
        if not subs:
            return False
        rows: list[Queued] = []
        for env, (tenant, owner) in people:
            mine = [s for s in subs if s.tenant == tenant and s.owner == owner]
            if not mine:
                continue
            payload = push_payload(env.message)
            body = dumps(payload)
            task_id = payload["task"]["id"]
            for sub in mine:
                rows.append(
                    Queued(
                        new_id("psh"),
                        tenant,
                        Channel.WEBPUSH,
                        sub.id,
                        payload["type"],
                        task_id,
                        body,
                    )
                )
        if not rows:
            return False
        # Only the latest state of a task matters on a lock screen: one statement (run
        # for every new push) supersedes the older pushes of the same task not yet tried.
        await conn.execute(
            _SUPERSEDE,
            [{"b_tenant": r.tenant, "b_target": r.target, "b_task": r.task_id} for r in rows],
        )
        await enqueue(conn, rows, now, self.retry.max_age_s)
        return True
