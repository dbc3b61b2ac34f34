"""Resume is exact: ``since`` older than the kept log gives a snapshot, and ``since``
newer than the server's seq (a database restored from a backup) gives a snapshot too,
never silence; live events then continue from the snapshot's seq."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from server.clock import now_utc
from server.ops import PruneEvents
from server.settings import Settings
from tests.support.app import make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.tasks import task_body


async def test_since_older_than_the_pruned_log_gives_a_snapshot(sqlite_url: str) -> None:
    async with serve(make_settings(sqlite_url)) as live:
        watcher = FeedClient(live.ws_url, token("alice"))
        await watcher.connect()
        async with live.producer() as p:
            for i in range(6):
                await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
            await watcher.until_seq(6)
            pruned = await live.parts.service.run(PruneEvents(now_utc() + timedelta(seconds=1)))
            late = FeedClient(live.ws_url, token("alice"))
            first = await late.connect(since=2)
            await p.post("/api/v1/tasks/t0/complete")
            await late.until_seq(7)
            await watcher.until_seq(7)
        await late.close()
        await watcher.close()
    assert pruned == 6
    assert first["type"] == "snapshot" and (first["seq"], first["count"]) == (6, 6)
    assert late.count == watcher.count == 5 and late.tasks.keys() == watcher.tasks.keys()


async def test_since_ahead_after_a_restore_gives_a_snapshot_then_live_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "taskbell.db"
    backup = tmp_path / "backup.db"
    settings = make_settings(f"sqlite+aiosqlite:///{path}")
    feed = FeedClient("", token("alice"))
    async with serve(settings) as live:
        feed.ws_url = live.ws_url
        await feed.connect()
        async with live.producer() as p:
            for i in range(3):
                await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
            with closing(sqlite3.connect(path)) as src, closing(sqlite3.connect(backup)) as dst:
                src.backup(dst)
            for i in range(3, 7):
                await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
        await feed.until_seq(7)
    code, _ = await feed.closed_with()  # the server stopped for the restore
    # The restore: yesterday's backup replaces the database.
    for leftover in (tmp_path / "taskbell.db-wal", tmp_path / "taskbell.db-shm"):
        leftover.unlink(missing_ok=True)
    path.write_bytes(backup.read_bytes())
    async with serve(settings) as live:
        feed.ws_url = live.ws_url
        first = await feed.connect(since=7)
        async with live.producer() as p:
            await p.post("/api/v1/tasks", json=task_body("after"))
        await feed.until_seq(4)
        await feed.close()
        running = await live.parts.reads.running_count("default", "user:alice")
    assert code == 1012
    assert first["type"] == "snapshot" and (first["seq"], first["count"]) == (3, 3)
    assert feed.events[-1]["seq"] == 4 and feed.events[-1]["task"]["id"] == "after"
    assert feed.count == running == 4
    assert sorted(feed.tasks) == ["after", "t0", "t1", "t2"]


async def test_the_timers_forget_feed_events_past_retention_at_start(backend: Settings) -> None:
    """Events older than the retention (a week) are deleted by the timers loop of a
    running server; younger ones stay and are still replayed."""
    async with serve(backend) as live, live.producer() as p:
        for i in range(3):
            await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
    engine = create_async_engine(backend.database_url)
    try:
        async with engine.begin() as conn:
            # the first two events of alice's feed: from long ago
            await conn.execute(
                text(
                    "UPDATE feed_event SET created_at = '2000-01-01 00:00:00'"
                    " WHERE feed = 'user:alice' AND seq <= 2"
                )
            )
        async with serve(backend) as live:

            async def kept() -> list[int]:
                async with engine.connect() as conn:
                    rows = await conn.execute(
                        text("SELECT seq FROM feed_event WHERE feed = 'user:alice' ORDER BY seq")
                    )
                    return [int(r.seq) for r in rows]

            for _ in range(200):
                if await kept() == [3]:
                    break
                await asyncio.sleep(0.05)
            left = await kept()
            recent = FeedClient(live.ws_url, token("alice"))
            recent.seq, recent.count, recent.tasks = 2, 2, {"t0": {}, "t1": {}}
            replayed = await recent.connect(since=2)
            await recent.close()
            behind = FeedClient(live.ws_url, token("alice"))
            resynced = await behind.connect(since=1)
            await behind.close()
    finally:
        await engine.dispose()
    assert left == [3]
    assert replayed == {
        "type": "synced",
        "seq": 3,
        "count": 3,
        "counts": {"running": 3, "postponed": 0},
        "feeds": {"user:alice": {"seq": 3, "count": 3, "counts": {"running": 3, "postponed": 0}}},
    }
    assert [e["task"]["id"] for e in recent.events] == ["t2"]
    assert resynced["type"] == "snapshot" and (resynced["seq"], resynced["count"]) == (3, 3)
