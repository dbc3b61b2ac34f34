"""The outbox worker: claims due rows (``server.delivery.queue``) and hands each to its
channel's sender, one attempt at a time, recording every result.

A ``ChannelSender`` is one channel's way of making an attempt (``WebhookSender``,
``PushSender``); not to be confused with ``server.connection.Sender``, a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Protocol

from server.delivery.queue import (
    Channel,
    Message,
    Outbox,
    Result,
    RetryPolicy,
    RowStatus,
    Verdict,
)
from server.metrics import UNCOUNTED

log = logging.getLogger("taskbell.outbox")

PRUNE_EVERY_S = 600.0


class ChannelSender(Protocol):
    """Delivers the messages of one channel."""

    retry: RetryPolicy

    async def send(self, message: Message) -> Result:
        """Make one attempt. Raising counts as a failed attempt, retried."""
        ...

    async def gave_up(self, message: Message, result: Result) -> None:
        """Called once a message has failed for good (its retries ran out)."""
        ...


class OutboxWorker:
    """Claims due rows and hands them to their channel's sender; one per process.

    Messages to the same target go one after another in queue order; different targets
    are served concurrently. ``kick()`` (after a change queued something) wakes it
    before its next poll.
    """

    def __init__(
        self,
        outbox: Outbox,
        senders: Mapping[Channel, ChannelSender],
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
        self.metrics = UNCOUNTED  # the app sets its own

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
        by_target: dict[tuple[str, Channel, str], list[Message]] = defaultdict(list)
        spare: list[str] = []
        for message in messages:
            queue = by_target[message.tenant, message.channel, message.target]
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
        self.metrics.deliveries.labels(message.channel.value, result.verdict.value).inc()
        self._in_flight.discard(message.id)
        if sender is not None and status is RowStatus.FAILED and result.verdict is Verdict.RETRY:
            await sender.gave_up(message, result)
        if status is not RowStatus.DELIVERED:
            log.info(
                "delivery attempt did not succeed",
                extra={
                    "tenant": message.tenant,
                    "delivery": message.id,
                    "channel": message.channel.value,
                    "attempt": message.attempts,
                    "status": result.status,
                    "error": result.error,
                    "now": status.value,
                },
            )
