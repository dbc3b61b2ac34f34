"""The write path as the API sees it: apply in the database, then publish."""

from __future__ import annotations

from collections.abc import Sequence

from server.broker import Broker
from server.errors import ApiError
from server.store import Op, Store
from server.transitions import Outcome


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
