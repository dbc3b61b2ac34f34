"""The one way to write: run an operation in one transaction, then, after commit,
publish what changed and wake the delivery side.

Everything that writes (the API, the timers, demo mode) calls this; nothing else holds
a write transaction. The order is always: ``writes`` commits, the broker gets the
envelopes (in commit order), then the ``on_commit`` listeners run (the outbox worker's
wake-up, when a hook queued deliveries).

Group commit: calls to ``apply`` that arrive while a write transaction is running wait
for it and are then applied together, in arrival order, in the next transaction. Each
op still succeeds or fails on its own and each caller gets exactly its own results; a
single change costs the same as before when the server is idle, and under load many
single-change requests cost about as much as one batch. A call whose ops raise
something unexpected fails alone: the rest of its group is applied again without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import overload

from server.audiences import Substitution
from server.broker import Broker
from server.changes import Applied
from server.errors import ApiError, Unavailable
from server.metrics import UNCOUNTED
from server.ops import (
    AddSubstitution,
    EndInstance,
    EndSubstitution,
    MarkOverdue,
    MarkSeen,
    MoveSubstitutions,
    PruneEvents,
    ResumeDue,
    RevokeUser,
    SetDisabled,
    SetExpectMore,
    SetMembers,
    StartInstance,
    TaskOp,
)
from server.processes import Ended, Instance, Started
from server.seen import Marked
from server.transitions import Outcome
from server.writes import Resumed, RoleSet, RunOp, RunResult, SubstitutionAdded, Writes

log = logging.getLogger("taskbell.service")

Results = list[Outcome | ApiError]
Pending = tuple[Sequence[TaskOp], "asyncio.Future[Results]"]

GROUP_MAX_OPS = 500  # the most ops one group-commit transaction takes


class Service:
    def __init__(self, writes: Writes, broker: Broker) -> None:
        self.writes = writes
        self.broker = broker
        self._listeners: list[Callable[[], None]] = []
        self._pending: deque[Pending] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self.metrics = UNCOUNTED  # the app sets its own

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every commit in which a hook queued deliveries."""
        self._listeners.append(listener)

    # ---------------------------------------------------------------- task operations

    async def apply(self, ops: Sequence[TaskOp]) -> Results:
        """Apply ``ops`` in one transaction (shared with concurrent callers), publish
        what changed, and return this call's per-op results in order.

        Raises ``Unavailable`` when the database cannot take the write."""
        future: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        self._pending.append((ops, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="group-commit")
        return await future

    async def apply_one(self, op: TaskOp) -> Outcome:
        """Apply one op; raises its ``ApiError`` when it is refused."""
        (result,) = await self.apply([op])
        if isinstance(result, ApiError):
            raise result
        return result

    async def _drain(self) -> None:
        while self._pending:
            group = [self._pending.popleft()]
            size = len(group[0][0])
            while self._pending and size + len(self._pending[0][0]) <= GROUP_MAX_OPS:
                group.append(self._pending.popleft())
                size += len(group[-1][0])
            await self._commit_group(group)

    async def _commit_group(self, group: list[Pending]) -> None:
        ops = [op for batch, _ in group for op in batch]
        started = time.perf_counter()
        try:
            applied = await self.writes.apply(ops)
        except Unavailable as exc:  # the database is away: nobody's write can succeed
            _fail(group, exc)
            return
        except Exception as exc:
            if len(group) == 1:
                log.exception("a write failed")
                _fail(group, exc)
                return
            # Something unexpected in one call's ops: apply each call alone, so only
            # the call that causes it fails.
            for one in group:
                await self._commit_group([one])
            return
        self.metrics.wrote(len(ops), time.perf_counter() - started)
        await self._committed(applied)
        start = 0
        for batch, future in group:
            if not future.done():
                future.set_result(applied.results[start : start + len(batch)])
            start += len(batch)

    # ---------------------------------------------------------------- other operations

    @overload
    async def run(self, op: StartInstance) -> Started: ...
    @overload
    async def run(self, op: SetExpectMore) -> Instance: ...
    @overload
    async def run(self, op: EndInstance) -> Ended: ...
    @overload
    async def run(self, op: SetDisabled) -> None: ...
    @overload
    async def run(self, op: ResumeDue) -> Resumed: ...
    @overload
    async def run(self, op: MarkOverdue) -> Resumed: ...
    @overload
    async def run(self, op: RevokeUser) -> datetime: ...
    @overload
    async def run(self, op: PruneEvents) -> int: ...
    @overload
    async def run(self, op: MarkSeen) -> Marked: ...
    @overload
    async def run(self, op: SetMembers) -> RoleSet: ...
    @overload
    async def run(self, op: AddSubstitution) -> SubstitutionAdded: ...
    @overload
    async def run(self, op: EndSubstitution) -> Substitution: ...
    @overload
    async def run(self, op: MoveSubstitutions) -> int: ...

    async def run(self, op: RunOp) -> RunResult:
        """Run one process or clock operation in its own transaction, then publish.
        Raises its ``ApiError`` when refused, ``Unavailable`` when the database is away."""
        started = time.perf_counter()
        result, applied = await self.writes.run(op)
        self.metrics.wrote(1, time.perf_counter() - started)
        await self._committed(applied)
        return result

    # ---------------------------------------------------------------- after commit

    async def _committed(self, applied: Applied) -> None:
        if applied.envelopes:
            await self.broker.publish(applied.envelopes)
        if applied.queued:
            for listener in self._listeners:
                listener()

    async def close(self) -> None:
        """Finish the writes already accepted (the drainer is owned here)."""
        if self._drainer is not None:
            with contextlib.suppress(Exception):
                await self._drainer


def _fail(group: list[Pending], exc: BaseException) -> None:
    for _, future in group:
        if not future.done():
            future.set_exception(exc)
