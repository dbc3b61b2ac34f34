"""Queueing webhook deliveries.

``WebhookHook`` runs inside the write transaction (a ``TxHook``, see ``server.changes``):
one outbox row per (event, endpoint that wants it), so a delivery exists exactly when
its change committed. An event goes only to endpoints of its task's tenant (one
transaction may carry changes of several tenants), and its row carries that tenant.
``server.delivery.webhooks.sender`` makes the attempts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from server.changes import Envelope
from server.delivery.queue import Channel, Queued, RetryPolicy, enqueue, new_id
from server.delivery.webhooks.endpoints import Endpoints
from server.delivery.webhooks.events import build_event, wants
from server.ops import TaskOp
from server.transitions import Outcome


class WebhookHook:
    """Write hook (a ``TxHook``, see ``server.changes``): queue one delivery per event
    and interested enabled endpoint."""

    def __init__(self, endpoints: Endpoints, retry: RetryPolicy) -> None:
        self.endpoints = endpoints
        self.retry = retry

    async def __call__(
        self,
        conn: AsyncConnection,
        changes: Sequence[tuple[TaskOp, Outcome]],
        envelopes: Sequence[Envelope],
        now: datetime,
    ) -> bool:
        if not changes:
            return False
        # Endpoints first: with none registered, no event is even encoded.
        tenants = {outcome.state.tenant for _, outcome in changes if outcome.state is not None}
        targets = await self.endpoints.enabled(conn, tenants)
        if not targets:
            return False
        events = [e for op, outcome in changes if (e := build_event(op, outcome, now))]
        rows = [
            Queued(
                new_id("msg"),
                ev.tenant,
                Channel.WEBHOOK,
                ep.id,
                ev.type.value,
                ev.task_id,
                ev.body,
            )
            for ev in events
            for ep in targets
            if wants(ev, ep.tenant, ep.events, ep.owners)
        ]
        if not rows:
            return False
        await enqueue(conn, rows, now, self.retry.max_age_s)
        return True
