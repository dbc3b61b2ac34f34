"""What a committed write hands on: the envelopes to publish, each operation's result,
and whether the delivery side has new work; and the hook through which outboxes write
in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import ApiError
from server.ops import TaskOp
from server.transitions import Outcome


@dataclass(frozen=True, slots=True)
class FeedPos:
    """Where an owner's feed stands: its last ``seq`` and the ``count`` (running tasks)
    and ``postponed`` (postponed tasks) that go with it."""

    seq: int
    count: int
    postponed: int = 0


ORIGIN = FeedPos(0, 0, 0)  # an owner never seen


@dataclass(frozen=True, slots=True)
class Logged:
    """One kept feed event: its seq, the counts that go with it, the exact message."""

    seq: int
    count: int
    message: str
    postponed: int = 0


@dataclass(frozen=True, slots=True)
class Envelope:
    """One feed change as published to the broker: the message is encoded once.
    ``key`` is the feed's key (``server.feeds``: tenant and feed)."""

    key: str
    seq: int
    count: int
    message: str
    postponed: int = 0


class TxHook(Protocol):
    """Runs inside the write transaction, after the changes are written: for outboxes
    (webhook and push deliveries) that must commit or roll back with the change.
    Returns whether it queued anything (the service then wakes the delivery worker,
    after commit). ``envelopes`` are the changes' effects in order, one each."""

    async def __call__(
        self,
        conn: AsyncConnection,
        changes: Sequence[tuple[TaskOp, Outcome]],
        envelopes: Sequence[Envelope],
        now: datetime,
    ) -> bool: ...


@dataclass
class Applied:
    """What one transaction of task operations did: per-op results in order, the
    envelopes to publish, and whether a hook queued deliveries."""

    results: list[Outcome | ApiError]
    envelopes: list[Envelope] = field(default_factory=list)
    queued: bool = False

    def merge(self, other: Applied) -> None:
        """Take ``other``'s envelopes and queued flag (not its results)."""
        self.envelopes.extend(other.envelopes)
        self.queued = self.queued or other.queued
