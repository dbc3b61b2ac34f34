"""The durable outbox: messages to webhook endpoints and push services, delivered at
least once, surviving restarts and Redis outages. This module is its vocabulary and its
SQL; ``server.delivery.worker`` attempts the rows.

Life of a row (``outbox`` table)::

    enqueue (inside the change's transaction) ─▶ pending ──claim──▶ attempt
        ▲                                          │  ▲                │
        │ redeliver                                │  └── retry (backoff + jitter)
        │                                          ├──▶ delivered
        └──────────── failed ◀── gave up / refused ┤
                                                   ├──▶ superseded (a newer push for the
                                                   │    same task replaced it)
                                                   └──▶ paused (endpoint disabled; back
                                                        to pending when re-enabled)

Claiming is a short transaction that takes due rows (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; SQLite has one writer) and moves their ``next_attempt_at`` a lease ahead,
so each row is attempted by one instance at a time and a crashed instance's rows come
back when the lease ends. The result of an attempt is written in another short
transaction. No transaction is ever open during an HTTP call.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, NamedTuple

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server import direct
from server.clock import as_utc, now_utc
from server.db import Engines
from server.delivery.tables import outbox_t

RETENTION = timedelta(days=7)  # how long finished rows stay in the delivery log
_INSERT_OUTBOX = insert(outbox_t)  # built once (server/direct.py)


class Channel(StrEnum):
    WEBHOOK = "webhook"
    WEBPUSH = "webpush"


class RowStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    PAUSED = "paused"


class Verdict(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # try again later (network, 5xx, 429)
    FAILED = "failed"  # never again (refused, target gone)


@dataclass(frozen=True, slots=True)
class Result:
    """What one attempt did, as a sender reports it."""

    verdict: Verdict
    status: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter: the n-th retry waits about ``base * 2**(n-1)``
    seconds (at most ``cap``), and a row is given up ``max_age`` after it was queued."""

    base_s: float
    cap_s: float
    max_age_s: float

    def delay(self, attempts: int, rand: random.Random | None = None) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt ("equal jitter":
        half fixed, half random, so retries of many rows spread out)."""
        exp = min(self.cap_s, self.base_s * 2.0 ** max(0, attempts - 1))
        r = (rand or random).random()
        return exp / 2 + exp / 2 * r


@dataclass(frozen=True, slots=True)
class Message:
    """One claimed row, handed to its channel's sender (``ChannelSender``). ``target``
    is an endpoint or subscription of ``tenant``: senders look it up with both."""

    id: str
    tenant: str
    channel: Channel
    target: str
    event_type: str
    task_id: str
    payload: str
    attempts: int
    created_at: datetime


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Queued(NamedTuple):
    """One row to queue: a message to ``target`` (an endpoint or subscription of
    ``tenant``, the tenant of the change it announces)."""

    id: str
    tenant: str
    channel: Channel
    target: str
    event_type: str
    task_id: str
    payload: str


async def enqueue(
    conn: AsyncConnection, rows: Sequence[Queued], now: datetime, max_age_s: float
) -> None:
    """Queue ``rows``, due now. Call inside the transaction of the change they announce."""
    if not rows:
        return
    expires = now + timedelta(seconds=max_age_s)
    await direct.execute(
        conn,
        _INSERT_OUTBOX,
        [
            {
                "id": row.id,
                "tenant": row.tenant,
                "channel": row.channel.value,
                "target": row.target,
                "event_type": row.event_type,
                "task_id": row.task_id,
                "payload": row.payload,
                "status": RowStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "expires_at": expires,
                "created_at": now,
            }
            for row in rows
        ],
    )


class Outbox:
    """SQL of the outbox: claim due rows, record attempts, pause, resume, redeliver."""

    def __init__(self, engines: Engines, *, lease_s: float = 60.0) -> None:
        self.engines = engines
        self.lease_s = lease_s

    async def claim(self, limit: int, now: datetime | None = None) -> list[Message]:
        """Take up to ``limit`` due rows for this instance (see the module docstring)."""
        now = now or now_utc()
        query = (
            select(outbox_t)
            .where(
                and_(
                    outbox_t.c.status == RowStatus.PENDING.value, outbox_t.c.next_attempt_at <= now
                )
            )
            .order_by(outbox_t.c.next_attempt_at, outbox_t.c.created_at)
            .limit(limit)
        )
        if not self.engines.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        async with self.engines.writer.begin() as conn:
            rows = list(await conn.execute(query))
            if not rows:
                return []
            await conn.execute(
                update(outbox_t)
                .where(outbox_t.c.id.in_([r.id for r in rows]))
                .values(
                    next_attempt_at=now + timedelta(seconds=self.lease_s),
                    attempts=outbox_t.c.attempts + 1,
                    last_attempt_at=now,
                )
            )
        return [
            Message(
                id=r.id,
                tenant=r.tenant,
                channel=Channel(r.channel),
                target=r.target,
                event_type=r.event_type,
                task_id=r.task_id,
                payload=r.payload,
                attempts=int(r.attempts) + 1,
                created_at=r.created_at,
            )
            for r in rows
        ]

    async def has_due(self, now: datetime | None = None) -> bool:
        """A cheap read (on a reader) to skip the claim transaction when idle."""
        now = now or now_utc()
        async with self.engines.reader.connect() as conn:
            row = (
                await conn.execute(
                    select(outbox_t.c.id)
                    .where(
                        and_(
                            outbox_t.c.status == RowStatus.PENDING.value,
                            outbox_t.c.next_attempt_at <= now,
                        )
                    )
                    .limit(1)
                )
            ).first()
        return row is not None

    async def record(
        self, message: Message, result: Result, policy: RetryPolicy, now: datetime | None = None
    ) -> RowStatus:
        """Write the result of one attempt; returns the row's new status."""
        now = now or now_utc()
        values: dict[str, Any] = {"last_status": result.status, "last_error": result.error}
        cond = outbox_t.c.id == message.id
        async with self.engines.writer.begin() as conn:
            if result.verdict is Verdict.DELIVERED:
                status = RowStatus.DELIVERED
                values.update(delivered_at=now, last_error=None)
            else:
                # Only a row still pending moves on: a paused or superseded one stays so.
                cond = and_(cond, outbox_t.c.status == RowStatus.PENDING.value)
                status = RowStatus.FAILED
                if result.verdict is Verdict.RETRY:
                    delay = policy.delay(message.attempts)
                    if result.retry_after_s is not None:
                        delay = min(policy.cap_s, max(delay, result.retry_after_s))
                    when = now + timedelta(seconds=delay)
                    expires = await conn.scalar(
                        select(outbox_t.c.expires_at).where(outbox_t.c.id == message.id)
                    )
                    if expires is not None and as_utc(expires) > when:
                        status = RowStatus.PENDING
                        values["next_attempt_at"] = when
                    else:
                        values["last_error"] = (
                            f"{result.error or 'failed'}; gave up after {message.attempts} attempts"
                        )
            values["status"] = status.value
            await conn.execute(update(outbox_t).where(cond).values(values))
        return status

    async def release(self, ids: Sequence[str], *, unattempted: bool = False) -> None:
        """Make claimed rows due again at once (a graceful stop in mid-attempt; or rows
        claimed but not to be attempted in this pass, whose claim is then undone)."""
        if not ids:
            return
        values: dict[str, Any] = {"next_attempt_at": now_utc()}
        if unattempted:
            values["attempts"] = outbox_t.c.attempts - 1
        async with self.engines.writer.begin() as conn:
            await conn.execute(
                update(outbox_t)
                .where(and_(outbox_t.c.id.in_(list(ids)), outbox_t.c.status == "pending"))
                .values(values)
            )

    async def prune(self, now: datetime | None = None) -> int:
        """Delete finished rows older than ``RETENTION``."""
        cutoff = (now or now_utc()) - RETENTION
        finished = [RowStatus.DELIVERED.value, RowStatus.FAILED.value, RowStatus.SUPERSEDED.value]
        async with self.engines.writer.begin() as conn:
            res = await conn.execute(
                delete(outbox_t).where(
                    and_(outbox_t.c.status.in_(finished), outbox_t.c.created_at < cutoff)
                )
            )
        return int(res.rowcount or 0)
