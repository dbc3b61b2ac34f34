"""Queueing pushes: every change of a person's own feed (``user:<id>`` of a tenant)
becomes one push to each of that person's subscriptions in that tenant, through the
outbox (so a push survives a restart). The payload is the feed event trimmed to what a
notification shows.

Role feeds push nothing: a task offered to a role is not pushed to the role's members
(it would ring every member's phone for one task); it is pushed once someone claims it
(it enters their own feed). A substitute follows the absent person's feed on a socket
but gets no pushes of it: pushes go to the feed's own person only.

A newer push for the same task supersedes one still queued and not yet tried: only the
latest state of a task matters on a lock screen.

The person's preferences (``server.preferences``) are read in the same transaction and
decide, at the moment of the change, whether a ``task.added`` or ``task.updated`` (what
shows a notification) is queued at all: a push the person's channel switch, process mute
or quiet hours silence is not queued (not an error; counted in
``taskbell_notifications_suppressed_total``). A ``task.removed`` is always queued: it
only retracts a notification shown before and keeps the device's badge right.

Each push carries its notification's words in the language of its subscription (the
``locale`` claim of the token that registered it; ``notification``), so one event
becomes one payload per language among the person's browsers.

An event that moves only a feed's postponed count (a ``task.removed`` of a task that was
not running there, e.g. created already postponed) is not pushed: there is no
notification it could close.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import and_, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server import direct
from server.changes import Envelope
from server.delivery.queue import Channel, Queued, RetryPolicy, RowStatus, enqueue, new_id
from server.delivery.tables import outbox_t
from server.delivery.webpush.notification import TITLE_MAX, notification
from server.delivery.webpush.subscriptions import Subscriptions
from server.delivery.wire import PushPayload
from server.feeds import USER, split_key
from server.i18n import Texts, texts_for
from server.metrics import UNCOUNTED
from server.ops import TaskOp
from server.preference_store import PreferenceStore
from server.preferences import DEFAULT, silence
from server.preferences import Channel as PrefChannel
from server.transitions import Effect, Outcome
from server.wire import EventMessage, EventType, dumps

URL_MAX = 1000


def push_payload(message: str, texts: Texts, now: datetime) -> PushPayload:
    """The push for one feed event (the stored WebSocket message), trimmed to what a
    notification shows so it stays far below the push services' 4 KiB limit, with the
    notification's words in ``texts``' language."""
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
        "notification": notification(task, event["count"], texts, now),
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

    def __init__(
        self, subscriptions: Subscriptions, retry: RetryPolicy, preferences: PreferenceStore
    ) -> None:
        self.subscriptions = subscriptions
        self.retry = retry
        self.preferences = preferences
        self.metrics = UNCOUNTED  # the app sets its own

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
        prefs = await self.preferences.of_people(conn, {(s.tenant, s.owner) for s in subs})
        rows: list[Queued] = []
        for env, (tenant, owner) in people:
            mine = [s for s in subs if s.tenant == tenant and s.owner == owner]
            if not mine:
                continue
            event = cast(EventMessage, orjson.loads(env.message))
            if event["type"] != "task.removed":
                why = silence(
                    prefs.get((tenant, owner), DEFAULT), PrefChannel.PUSH, event["task"], now
                )
                if why is not None:
                    self.metrics.suppressed.labels("webpush", why.value).inc()
                    continue
            bodies: dict[str, tuple[PushPayload, str]] = {}  # language tag → its push
            for sub in mine:
                texts = texts_for(sub.locale)
                if texts.tag not in bodies:
                    made = push_payload(env.message, texts, now)
                    bodies[texts.tag] = (made, dumps(made))
                payload, body = bodies[texts.tag]
                rows.append(
                    Queued(
                        new_id("psh"),
                        tenant,
                        Channel.WEBPUSH,
                        sub.id,
                        payload["type"],
                        payload["task"]["id"],
                        body,
                    )
                )
        if not rows:
            return False
        # Only the latest state of a task matters on a lock screen: one statement (run
        # for every new push) supersedes the older pushes of the same task not yet tried.
        await direct.execute(
            conn,
            _SUPERSEDE,
            [{"b_tenant": r.tenant, "b_target": r.target, "b_task": r.task_id} for r in rows],
        )
        await enqueue(conn, rows, now, self.retry.max_age_s)
        return True
