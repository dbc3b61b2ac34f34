"""The write path as the API sees it: apply in the database, then publish."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from server.broker import Broker
from server.changes import Envelope, Op
from server.errors import ApiError
from server.store import Store
from server.transitions import Outcome

T = TypeVar("T")


class Service:
    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def apply(self, ops: Sequence[Op]) -> list[Outcome | ApiError]:
        """Apply ``ops`` in one transaction, publish what changed, return per-op results."""
        applied = await self.store.apply(ops)
        if applied.envelopes:
            await self.broker.publish(applied.envelopes)
        return applied.results

    async def apply_one(self, op: Op) -> Outcome:
        """Apply one op; raises its ``ApiError`` when it is refused."""
        (result,) = await self.apply([op])
        if isinstance(result, ApiError):
            raise result
        return result

    async def write(
        self,
        fn: Callable[[AsyncConnection, datetime], Awaitable[tuple[T, Sequence[Envelope]]]],
    ) -> T:
        """Run ``fn`` in one write transaction, then publish the envelopes it made."""
        value, envelopes = await self.store.write(fn)
        if envelopes:
            await self.broker.publish(envelopes)
        return value
