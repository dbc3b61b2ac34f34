"""Migration 0007 (live counts) on SQLite and PostgreSQL: every feed's ``postponed`` is
counted from the tasks table, per tenant and feed, a feed holding only postponed tasks
gets a row, and each feed's latest event takes the feed's count."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from server.migrate import upgrade
from tests.test_migrations import database_url  # noqa: F401  (the sqlite/postgres fixture)

_TASK = (
    "INSERT INTO task (tenant, id, owner, role, title, kind, status, created_at, updated_at,"
    " body_hash) VALUES (:tenant, :id, :owner, :role, 't', 'activity', :status,"
    " '2026-12-01 10:00:00', '2026-12-01 10:00:00', 'h')"
)
_EVENT = (
    "INSERT INTO feed_event (tenant, feed, seq, type, task_id, count, message, created_at)"
    " VALUES (:tenant, :feed, :seq, 'task.added', 'x', 1, '{}', '2026-12-01 10:00:00')"
)


async def test_0007_counts_every_feeds_postponed_tasks(database_url: str) -> None:  # noqa: F811
    await asyncio.to_thread(upgrade, database_url, "0006")
    engine = create_async_engine(database_url)
    tasks = [
        ("default", "a1", "alice", None, "postponed"),
        ("default", "a2", "alice", None, "postponed"),
        ("default", "a3", "alice", None, "running"),
        ("default", "a4", "alice", None, "canceled"),
        ("default", "q1", None, "desk", "postponed"),
        ("default", "q2", "bob", "desk", "postponed"),  # claimed: bob's, not the queue's
        ("acme", "a1", "alice", None, "postponed"),
        ("acme", "c1", "carol", None, "postponed"),  # carol has no feed row yet
    ]
    try:
        async with engine.begin() as conn:
            for tenant, tid, owner, role, status in tasks:
                params = {"tenant": tenant, "id": tid, "owner": owner, "role": role}
                await conn.execute(text(_TASK), {**params, "status": status})
            await conn.execute(
                text(
                    "INSERT INTO feed (tenant, feed, seq, count) VALUES"
                    " ('default', 'user:alice', 2, 1), ('default', 'role:desk', 1, 0),"
                    " ('default', 'user:bob', 1, 0), ('acme', 'user:alice', 1, 0),"
                    " ('default', 'user:dan', 3, 0)"
                )
            )
            for seq in (1, 2):
                await conn.execute(
                    text(_EVENT), {"tenant": "default", "feed": "user:alice", "seq": seq}
                )
        await asyncio.to_thread(upgrade, database_url)
        async with engine.connect() as conn:
            feeds = {
                (str(t), str(f)): (int(s), int(c), int(p))
                for t, f, s, c, p in await conn.execute(
                    text('SELECT tenant, feed, seq, "count", postponed FROM feed')
                )
            }
            events = {
                int(s): int(p)
                for s, p in await conn.execute(
                    text("SELECT seq, postponed FROM feed_event ORDER BY seq")
                )
            }
    finally:
        await engine.dispose()
    assert feeds == {
        ("default", "user:alice"): (2, 1, 2),
        ("default", "role:desk"): (1, 0, 1),
        ("default", "user:bob"): (1, 0, 1),
        ("default", "user:dan"): (3, 0, 0),
        ("acme", "user:alice"): (1, 0, 1),
        ("acme", "user:carol"): (0, 0, 1),
    }
    assert events == {1: 0, 2: 2}, "the latest event takes the feed's postponed count"
