"""The write path as the API sees it: apply in the database, then publish.

Group commit: calls to ``apply`` that arrive while a write transaction is running wait
for it and are then applied together, in arrival order, in the next transaction. Each
op still succeeds or fails on its own and each caller gets exactly its own results; a
single change costs the same as before when the server is idle, and under load many
single-change requests cost about as much as one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
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
Results = list[Outcome | ApiError]

GROUP_MAX_OPS = 500  # the most ops one group-commit transaction takes


class Service:
    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker
        self._pending: deque[tuple[Sequence[Op], asyncio.Future[Results]]] = deque()
        self._drainer: asyncio.Task[None] | None = None

    async def apply(self, ops: Sequence[Op]) -> Results:
        """Apply ``ops`` in one transaction (shared with concurrent callers), publish
        what changed, and return this call's per-op results in order.

        Raises ``Unavailable`` when the database cannot take the write."""
        future: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="group-commit")
        return await future

    async def _drain(self) -> None:
        while self._pending:
            group = [self._pending.popleft()]
            size = len(group[0][0])
            while self._pending and size + len(self._pending[0][0]) <= GROUP_MAX_OPS:
                group.append(self._pending.popleft())
                size += len(group[-1][0])
            ops = [op for batch, _ in group for op in batch]
            try:
                applied = await self.store.apply(ops)
            except Exception as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if applied.envelopes:
                await self.broker.publish(applied.envelopes)
            start = 0
            for batch, future in group:
                if not future.done():
                    future.set_result(applied.results[start : start + len(batch)])
                start += len(batch)

    async def close(self) -> None:
        """Finish the writes already accepted (the drainer is owned here)."""
        if self._drainer is not None:
            with contextlib.suppress(Exception):
                await self._drainer

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
