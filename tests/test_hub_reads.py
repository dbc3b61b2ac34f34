"""What a join costs the database: the audience and every followed feed's view are read
on one pooled reader connection (a checkout each was most of a connect's database cost
on SQLite), and on SQLite with no thread hand-off at all (the joins' inline readers).
The real hub over the real feed log, on a migrated SQLite file."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text

from server import audiences
from server.auth import User
from server.db import Engines
from server.feedlog import SqlFeedLog
from server.hub import Hub
from tests.support.sqlite import count_hand_offs, migrated_engines
from tests.test_hub import Recorder


@pytest.fixture
async def engines(sqlite_url: str) -> AsyncIterator[Engines]:
    async with migrated_engines(sqlite_url) as eng:
        yield eng


def count_checkouts(eng: Engines) -> list[int]:
    checkouts: list[int] = []

    def on_checkout(*_: Any) -> None:
        checkouts.append(1)

    event.listen(eng.joins_reader.sync_engine.pool, "checkout", on_checkout)
    return checkouts


async def test_a_join_reads_audience_and_every_view_on_one_connection(engines: Engines) -> None:
    async with engines.writer.begin() as conn:
        await audiences.set_members(conn, "default", "approvers", ["alice"], datetime.now(UTC))
    hub = Hub(SqlFeedLog(engines), sweep_interval=3600)
    checkouts = count_checkouts(engines)
    rec = Recorder()
    async with hub.session(rec, User("alice", time.time() + 3600), None):
        await rec.until(lambda: bool(rec.sent))
    snapshot = rec.sent[0]
    assert snapshot["type"] == "snapshot"
    assert list(snapshot["feeds"]) == ["user:alice", "role:approvers"]
    assert len(checkouts) == 1, "one reader connection for the audience and both views"
    await hub.stop()


def count_joins_hand_offs(eng: Engines) -> list[str]:
    """Every trip onto a thread of the joins' connections, from the moment each is made
    (``_execute`` is aiosqlite's one way onto its connection's thread)."""
    calls: list[str] = []

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        count_hand_offs(dbapi_connection._connection, calls)

    event.listen(eng.joins_reader.sync_engine, "connect", on_connect)
    return calls


async def test_a_join_on_sqlite_reads_without_a_thread_hand_off(engines: Engines) -> None:
    async with engines.writer.begin() as conn:
        await audiences.set_members(conn, "default", "approvers", ["alice"], datetime.now(UTC))
    hub = Hub(SqlFeedLog(engines), sweep_interval=3600)
    checkouts = count_checkouts(engines)
    calls = count_joins_hand_offs(engines)
    for _ in range(3):
        rec = Recorder()
        async with hub.session(rec, User("alice", time.time() + 3600), None):
            await rec.until(lambda r=rec: bool(r.sent))  # type: ignore[misc]
        assert rec.sent[0]["type"] == "snapshot"
    assert len(checkouts) == 1, "the joins' reader, checked out once and kept between joins"
    assert calls == [], "BEGIN, the audience, both views and the ROLLBACK on the loop's thread"
    await hub.stop()


async def test_the_joins_reader_is_kept_lent_again_and_dropped_after_an_error(
    engines: Engines,
) -> None:
    async with engines.join_reads() as first:
        assert (await first.execute(text("SELECT 1"))).scalar() == 1
        # a join that comes while this one holds it gets another from the pool
        async with engines.join_reads() as second:
            assert second is not first
            assert (await second.execute(text("SELECT 2"))).scalar() == 2
    async with engines.join_reads() as again:
        assert again is second, "the first one back is kept for the next join"
    with pytest.raises(RuntimeError):
        async with engines.join_reads() as failing:
            assert failing is again
            raise RuntimeError("a read failed")
    async with engines.join_reads() as fresh:
        assert fresh is not failing, "a connection that saw an error is not lent again"
        assert not fresh.in_nested_transaction()
        assert (await fresh.execute(text("SELECT 3"))).scalar() == 3
