"""What a write is made of, shared by the store, the process rules and the outboxes:
the requested operations, their per-op results, and the envelopes to publish."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import ApiError
from server.transitions import Outcome
from server.wire import Postpone, TaskCreate, TaskPatch

OpKind = Literal["create", "update", "complete", "cancel", "postpone", "resume"]


@dataclass(frozen=True, slots=True)
class Op:
    """One requested change. ``actor`` is the person acting, or None for a producer."""

    kind: OpKind
    id: str
    body: TaskCreate | TaskPatch | Postpone | None = None
    actor: str | None = None
    reason: str = "resumed"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One feed change as published to the broker: the message is encoded once."""

    owner: str
    seq: int
    count: int
    message: str


class TxHook(Protocol):
    """Runs inside the write transaction, after the changes are written: for outboxes
    (webhook and push deliveries) that must commit or roll back with the change."""

    async def __call__(
        self,
        conn: AsyncConnection,
        changes: Sequence[tuple[Op, Outcome]],
        envelopes: Sequence[Envelope],
        now: datetime,
    ) -> None: ...


@dataclass
class Applied:
    results: list[Outcome | ApiError]
    envelopes: list[Envelope] = field(default_factory=list)
