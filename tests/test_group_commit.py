"""Group commit keeps each call's fate its own: a call whose ops make the transaction
fail with something unexpected fails alone, and the calls grouped with it are applied
as if they had come alone. The real write path on SQLite and PostgreSQL; the failure
comes from a write hook passed in through the constructor's list, as an outbox is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from server.broker.memory import MemoryBroker
from server.changes import Envelope
from server.db import make_engines
from server.migrate import upgrade
from server.ops import CreateTask, TaskOp
from server.reads import Reads
from server.service import Service
from server.settings import Settings
from server.transitions import Outcome
from server.wire import TaskCreate
from server.writes import Writes
from tests.support.app import key


class Boom(Exception):
    pass


class FailsOn:
    """A write hook that breaks the transaction whenever task ``bad`` is in it."""

    def __init__(self, bad: str) -> None:
        self.bad = bad
        self.groups: list[list[str]] = []

    async def __call__(
        self,
        conn: AsyncConnection,
        changes: Sequence[tuple[TaskOp, Outcome]],
        envelopes: Sequence[Envelope],
        now: datetime,
    ) -> bool:
        ids = sorted(op.id for op, _ in changes)
        self.groups.append(ids)
        if self.bad in ids:
            raise Boom(self.bad)
        return False


@pytest.fixture
async def service(backend: Settings) -> AsyncIterator[tuple[Service, Reads, FailsOn]]:
    await asyncio.to_thread(upgrade, backend.database_url)
    engines = make_engines(backend.database_url)
    writes = Writes(engines)
    hook = FailsOn("bad")
    writes.hooks.append(hook)
    svc = Service(writes, MemoryBroker())
    try:
        yield svc, Reads(engines), hook
    finally:
        await svc.close()
        await engines.dispose()


def create(tid: str) -> CreateTask:
    return CreateTask(TaskCreate(id=tid, owner="alice", title=f"Task {tid}"))


async def test_a_call_that_breaks_its_group_fails_alone(
    service: tuple[Service, Reads, FailsOn],
) -> None:
    svc, reads, hook = service
    first = asyncio.create_task(svc.apply([create("first")]))
    await asyncio.sleep(0)  # the first call's transaction is under way
    results = await asyncio.gather(
        svc.apply([create("good-1")]),
        svc.apply([create("bad")]),
        svc.apply([create("good-2"), create("good-3")]),
        return_exceptions=True,
    )
    await first
    assert ["bad", "good-1", "good-2", "good-3"] in hook.groups, "the calls were grouped"
    good_1, bad, good_23 = results
    assert isinstance(bad, Boom)
    assert isinstance(good_1, list) and isinstance(good_23, list)
    assert all(isinstance(r, Outcome) and r.created for r in good_1 + good_23)
    for tid in ("first", "good-1", "good-2", "good-3"):
        assert await reads.get_task("default", tid) is not None, tid
    assert await reads.get_task("default", "bad") is None
    assert (await reads.counter(key("alice"))).count == 4
