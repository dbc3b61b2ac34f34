"""The durable outbox: messages to webhook endpoints and push services, delivered at
least once, surviving restarts and Redis outages.

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

import asyncio
import contextlib
import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, Protocol

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from server.clock import as_utc, now_utc
from server.db import Engines
from server.models_push import outbox_t

log = logging.getLogger("taskbell.outbox")

RETENTION = timedelta(days=7)  # how long finished rows stay in the delivery log
PRUNE_EVERY_S = 600.0


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
    """One claimed row, handed to its channel's sender."""

    id: str
    channel: Channel
    target: str
    event_type: str
    task_id: str
    payload: str
    attempts: int
    created_at: datetime


class Sender(Protocol):
    """Delivers the messages of one channel."""

    retry: RetryPolicy

    async def send(self, message: Message) -> Result:
        """Make one attempt. Raising counts as a failed attempt, retried."""
        ...

    async def gave_up(self, message: Message, result: Result) -> None:
        """Called once a message has failed for good (its retries ran out)."""
        ...


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


async def enqueue(
    conn: AsyncConnection,
    rows: Sequence[tuple[str, Channel, str, str, str, str]],
    now: datetime,
    max_age_s: float,
) -> None:
    """Queue ``(id, channel, target, event_type, task_id, payload)`` rows, due now.
    Call inside the transaction of the change they announce."""
    if not rows:
        return
    expires = now + timedelta(seconds=max_age_s)
    await conn.execute(
        insert(outbox_t),
        [
            {
                "id": id_,
                "channel": channel.value,
                "target": target,
                "event_type": event_type,
                "task_id": task_id,
                "payload": payload,
                "status": RowStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "expires_at": expires,
                "created_at": now,
            }
            for id_, channel, target, event_type, task_id, payload in rows
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


class OutboxWorker:
    """Claims due rows and hands them to their channel's sender; one per process.

    Messages to the same target go one after another in queue order; different targets
    are served concurrently. ``kick()`` (after a change queued something) wakes it
    before its next poll.
    """

    def __init__(
        self,
        outbox: Outbox,
        senders: Mapping[Channel, Sender],
        *,
        poll_s: float = 1.0,
        batch: int = 50,
        concurrency: int = 16,
        per_target: int = 4,
    ) -> None:
        self.outbox = outbox
        self.senders = dict(senders)
        self.poll_s = poll_s
        self.batch = batch
        self.per_target = max(1, per_target)
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[str] = set()
        self._last_prune = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-worker")

    def kick(self) -> None:
        self._wake.set()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let attempts in flight finish (up to ``grace_s``), then cancel the rest and
        make their rows due again, so the next instance start sends them at once."""
        self._stopping.set()
        self._wake.set()
        task = self._task
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=grace_s)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await self.outbox.release(sorted(self._in_flight))
        elif not task.cancelled() and task.exception() is not None:
            log.error("outbox worker had died: %r", task.exception())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                worked = await self.run_once()
                if loop.time() - self._last_prune > PRUNE_EVERY_S:
                    self._last_prune = loop.time()
                    await self.outbox.prune()
            except Exception as exc:  # database trouble: try again at the next poll
                log.warning("outbox pass failed: %s", type(exc).__name__)
                worked = False
            if worked:
                continue
            # A kick comes after the commit that queued rows (``Service.on_commit``), so
            # one look after it finds them.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    async def run_once(self) -> bool:
        """One pass: claim a batch and attempt it; True when there was something."""
        if not await self.outbox.has_due():
            return False
        messages = await self.outbox.claim(self.batch)
        if not messages:
            return False
        by_target: dict[str, list[Message]] = defaultdict(list)
        spare: list[str] = []
        for message in messages:
            queue = by_target[message.target]
            if len(queue) < self.per_target:
                queue.append(message)
            else:
                spare.append(message.id)
        # One target's messages go one after another, so only as many as surely fit in
        # the lease are kept; the rest are handed back for the next pass.
        await self.outbox.release(spare, unattempted=True)
        messages = [m for queue in by_target.values() for m in queue]
        self._in_flight.update(m.id for m in messages)
        try:
            await asyncio.gather(*(self._serve(batch) for batch in by_target.values()))
        finally:
            self._in_flight.difference_update(m.id for m in messages)
        return True

    async def _serve(self, messages: list[Message]) -> None:
        async with self._slots:
            for message in messages:
                await self._attempt(message)

    async def _attempt(self, message: Message) -> None:
        sender = self.senders.get(message.channel)
        if sender is None:
            result = Result(Verdict.FAILED, error=f"no sender for channel {message.channel}")
            policy = RetryPolicy(1.0, 1.0, 0.0)
        else:
            policy = sender.retry
            try:
                result = await sender.send(message)
            except Exception as exc:  # a sender bug must not stop the queue
                log.exception("sender failed on %s", message.id)
                result = Result(Verdict.RETRY, error=f"internal error: {type(exc).__name__}")
        status = await self.outbox.record(message, result, policy)
        self._in_flight.discard(message.id)
        if sender is not None and status is RowStatus.FAILED and result.verdict is Verdict.RETRY:
            await sender.gave_up(message, result)
        if status is not RowStatus.DELIVERED:
            log.info(
                "delivery attempt did not succeed",
                extra={
                    "delivery": message.id,
                    "channel": message.channel.value,
                    "attempt": message.attempts,
                    "status": result.status,
                    "error": result.error,
                    "now": status.value,
                },
            )
