"""Prebuilt statements straight on the inline SQLite connections (``server/direct.py``):
the same rows, values and errors as ``conn.execute``, and SQLAlchemy's own way whenever
the direct one does not apply. On a real, migrated SQLite file through ``make_engines``;
on PostgreSQL ``execute`` is ``conn.execute``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import and_, bindparam, event, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import direct
from server.audiences import _AUDIENCE
from server.db import Engines, make_engines
from server.feedlog import _SNAPSHOT_USER
from server.migrate import upgrade
from server.models import event_t, member_t, role_t, task_t
from server.sqlite_driver import INLINE_MAX_ROWS, on_thread
from server.writes import _INSERT_EVENTS, _INSERT_TASKS, _UPDATE_TASK, Writes
from tests.support.sqlite import count_hand_offs, migrated_engines

T0 = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)


def task_row(i: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c.name: None for c in task_t.columns}
    row.update(
        tenant="acme",
        id=f"t{i:03d}",
        owner="alice",
        title=f"Task {i} «ü»",
        kind="activity",
        status="running",
        created_at=T0 + timedelta(seconds=i),
        updated_at=T0 + timedelta(seconds=i),
        body_hash="h" * 64,
        priority="normal",
        overdue=i % 2 == 0,
    )
    row.update(changes)
    return row


@pytest.fixture
async def engines(sqlite_url: str) -> AsyncIterator[Engines]:
    async with migrated_engines(sqlite_url) as eng:
        yield eng


def through_sqlalchemy(eng: Engines) -> list[str]:
    """The statements that reach the driver through SQLAlchemy (the direct way does not)."""
    seen: list[str] = []

    def before(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement.split()[0])

    for engine in (eng.writer, eng.joins_reader):
        event.listen(engine.sync_engine, "before_cursor_execute", before)
    return seen


def as_plain(rows: Any) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    return [(tuple(r), dict(r._mapping)) for r in rows]


async def both_ways(
    eng: Engines, statement: Any, params: Any, setup: Any = None
) -> tuple[Any, Any, list[str]]:
    """Run ``statement`` directly and through SQLAlchemy, each in a transaction rolled
    back afterwards (after ``setup``): the two results, and what went through SQLAlchemy
    on the direct run."""
    out = []
    seen = through_sqlalchemy(eng)
    for way in ("direct", "sqlalchemy"):
        async with eng.writer.connect() as conn, conn.begin() as tx:
            if setup is not None:
                await setup(conn)
            seen.clear()
            if way == "direct":
                rows = await direct.execute(conn, statement, params)
                used = list(seen)
            else:
                rows = await conn.execute(statement, params)
            out.append((as_plain(rows) if statement.exported_columns else [], rows.rowcount))
            await tx.rollback()
    return out[0], out[1], used


async def insert_tasks(conn: AsyncConnection, n: int = 5) -> None:
    await conn.execute(_INSERT_TASKS, [task_row(i) for i in range(n)])


async def test_a_select_with_an_in_list_reads_the_same_rows_and_types(engines: Engines) -> None:
    writes = Writes(engines)
    params = {"tenant": "acme", "ids": ["t001", "t003", "t004", "nope"]}
    mine, theirs, used = await both_ways(engines, writes._select_tasks, params, insert_tasks)
    assert mine == theirs
    assert used == [], "nothing went through SQLAlchemy"
    rows = [m for _, m in mine[0]]
    assert [r["id"] for r in rows] == ["t001", "t003", "t004"]
    # a datetime to the microsecond (naive on SQLite, either way: readers apply UTC)
    assert rows[0]["created_at"] == (T0 + timedelta(seconds=1)).replace(tzinfo=None)
    assert rows[0]["overdue"] is False and rows[1]["overdue"] is False
    assert rows[2]["overdue"] is True  # (a bool, as SQLAlchemy reads it)
    assert rows[0]["title"] == "Task 1 «ü»"


async def test_lists_of_different_lengths_each_get_their_placeholders(engines: Engines) -> None:
    writes = Writes(engines)
    async with engines.writer.begin() as conn:
        await insert_tasks(conn, 6)
        for ids in (["t000"], ["t005", "t002"], ["t000", "t001", "t002", "t003"], ["t004"]):
            rows = await direct.execute(conn, writes._select_tasks, {"tenant": "acme", "ids": ids})
            assert [r.id for r in rows] == sorted(ids)


async def test_written_rows_are_stored_exactly_as_sqlalchemy_stores_them(
    engines: Engines,
) -> None:
    """Insert and update both ways, then read the raw stored values back: the same bytes
    in the file (a datetime's text, a bool's integer), whichever way wrote them."""
    stored: list[list[tuple[Any, ...]]] = []
    for way in ("direct", "sqlalchemy"):
        run = direct.execute if way == "direct" else None
        async with engines.writer.begin() as conn:
            await conn.execute(text("DELETE FROM task"))
            rows = [task_row(i, postponed_until=T0 + timedelta(days=i)) for i in range(3)]
            update = {
                "b_tenant": "acme",
                "b_id": "t001",
                **{
                    k: v
                    for k, v in task_row(1, title="renamed", overdue=True).items()
                    if k not in ("tenant", "id", "created_at", "body_hash")
                },
            }
            if run is not None:
                await run(conn, _INSERT_TASKS, rows)
                result = await run(conn, _UPDATE_TASK, [update])
            else:
                await conn.execute(_INSERT_TASKS, rows)
                result = await conn.execute(_UPDATE_TASK, [update])
            assert result.rowcount == 1
            raw = await conn.execute(
                text("SELECT id, title, overdue, created_at, postponed_until FROM task ORDER BY id")
            )
            stored.append([tuple(r) for r in raw])
    assert stored[0] == stored[1]
    assert stored[0][1][1:3] == ("renamed", 1)


async def test_an_upsert_returning_gives_each_row_for_one_or_several_parameter_sets(
    engines: Engines,
) -> None:
    writes = Writes(engines)
    one = {"tenant": "acme", "feed": "user:alice", "n": 2, "delta": 1, "moved": 0}
    several = [
        {"tenant": "acme", "feed": f"user:u{i}", "n": i + 1, "delta": i, "moved": 1}
        for i in range(5)
    ]

    async def seed(conn: AsyncConnection) -> None:
        await conn.execute(writes._feed_upsert, [one])  # alice exists: the update branch

    for params in (one, several, [one, *several]):
        mine, theirs, used = await both_ways(engines, writes._feed_upsert, params, seed)
        assert sorted(mine[0]) == sorted(theirs[0])
        assert used == []
    mine, _, _ = await both_ways(engines, writes._feed_upsert, one, seed)
    assert mine[0][0][1] == {
        "tenant": "acme",
        "feed": "user:alice",
        "seq": 4,
        "count": 2,
        "postponed": 0,
    }


async def test_a_union_with_literal_columns_and_the_snapshot_join_read_the_same(
    engines: Engines,
) -> None:
    async def seed(conn: AsyncConnection) -> None:
        await insert_tasks(conn, 4)
        await conn.execute(
            insert(role_t),
            [{"tenant": "acme", "id": "approvers", "created_at": T0, "updated_at": T0}],
        )
        await conn.execute(
            insert(member_t),
            [{"tenant": "acme", "role": "approvers", "user_id": "alice"}],
        )
        await conn.execute(
            text(
                "INSERT INTO feed (tenant, feed, seq, count, postponed)"
                " VALUES ('acme', 'user:alice', 9, 4, 0)"
            )
        )

    mine, theirs, used = await both_ways(
        engines, _AUDIENCE, {"tenant": "acme", "users": ["alice", "bob"]}, seed
    )
    assert mine == theirs and used == []
    assert [m for _, m in mine[0]] == [{"who": "alice", "kind": "role", "name": "approvers"}]
    params = {"tenant": "acme", "feed": "user:alice", "who": "alice"}
    mine, theirs, used = await both_ways(engines, _SNAPSHOT_USER, params, seed)
    assert mine == theirs and used == []
    assert [m["feed_seq"] for _, m in mine[0]] == [9, 9, 9, 9]


async def test_a_database_error_is_sqlalchemys_and_the_transaction_rolls_back(
    engines: Engines,
) -> None:
    with pytest.raises(IntegrityError) as caught:
        async with engines.writer.begin() as conn:
            await direct.execute(conn, _INSERT_TASKS, [task_row(1)])
            await direct.execute(conn, _INSERT_TASKS, [task_row(1)])  # the same key
    assert isinstance(caught.value.orig, sqlite3.IntegrityError)
    assert "UNIQUE" in str(caught.value.orig)
    async with engines.writer.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM task"))).scalar() == 0


async def test_what_the_direct_way_does_not_take_goes_through_sqlalchemy(
    engines: Engines,
) -> None:
    writes = Writes(engines)
    seen = through_sqlalchemy(engines)
    async with engines.writer.begin() as conn:
        await insert_tasks(conn, 3)
        seen.clear()
        # an empty IN list: SQLAlchemy renders it its own way
        empty = await direct.execute(conn, writes._select_tasks, {"tenant": "acme", "ids": []})
        assert list(empty) == [] and seen == ["SELECT"]
        seen.clear()
        # inside on_thread(): the statement runs on the connection's thread
        with on_thread():
            rows = await direct.execute(
                conn, writes._select_tasks, {"tenant": "acme", "ids": ["t001"]}
            )
        assert [r.id for r in rows] == ["t001"] and seen == ["SELECT"]
        seen.clear()
        # a column left to its Python-side default (priority, overdue)
        short = {k: v for k, v in task_row(99).items() if k not in ("priority", "overdue")}
        await direct.execute(conn, _INSERT_TASKS, [short])
        assert seen == ["INSERT"]
        row = (await conn.execute(text("SELECT priority, overdue FROM task WHERE id='t099'"))).one()
        assert tuple(row) == ("normal", 0)
        seen.clear()
        # and the rest did not go through it at all
        await direct.execute(conn, _INSERT_TASKS, [task_row(5)])
        await direct.execute(
            conn,
            _INSERT_EVENTS,
            [
                {
                    "tenant": "acme",
                    "feed": "user:alice",
                    "seq": 1,
                    "type": "task.added",
                    "task_id": "t005",
                    "count": 1,
                    "postponed": 0,
                    "message": "{}",
                    "created_at": T0,
                }
            ],
        )
        assert seen == []
        assert (
            await direct.scalar(
                conn,
                _COUNT_EVENTS,
                {"tenant": "acme"},
            )
        ) == 1


_COUNT_EVENTS = select(event_t.c.seq).where(and_(event_t.c.tenant == bindparam("tenant")))


async def test_more_rows_than_the_inline_limit_run_on_the_thread_the_same_way(
    engines: Engines,
) -> None:
    writes = Writes(engines)
    seen = through_sqlalchemy(engines)
    n = INLINE_MAX_ROWS + 8
    feeds = [
        {"tenant": "acme", "feed": f"user:u{i:03d}", "n": 1, "delta": 1, "moved": 0}
        for i in range(n)
    ]
    async with engines.writer.begin() as conn:
        seen.clear()
        adapt: Any = conn.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
        calls = count_hand_offs(adapt._connection)
        result = await direct.execute(conn, _INSERT_TASKS, [task_row(i) for i in range(n)])
        assert result.rowcount == n
        returned = await direct.execute(conn, writes._feed_upsert, feeds)
        assert sorted(r.feed for r in returned) == sorted(str(f["feed"]) for f in feeds)
        assert {r.seq for r in returned} == {1}
        big = await direct.execute(
            conn, writes._select_tasks, {"tenant": "acme", "ids": [f"t{i:03d}" for i in range(300)]}
        )
        assert [r.id for r in big] == [f"t{i:03d}" for i in range(n)]
        assert seen == [], "none of them through SQLAlchemy"
        assert calls == ["_waiting", "_waiting", "_waiting"], "each one trip to the thread"
        del conn.sync_connection.connection.dbapi_connection._connection._execute  # type: ignore[union-attr]
        stored = (await conn.execute(text("SELECT count(*) FROM task"))).scalar()
        assert stored == n


async def test_on_postgresql_it_is_sqlalchemys_own_execute(pg_url: str) -> None:
    await asyncio.to_thread(upgrade, pg_url)
    eng = make_engines(pg_url)
    try:
        writes = Writes(eng)
        async with eng.writer.begin() as conn:
            await direct.execute(conn, _INSERT_TASKS, [task_row(i) for i in range(3)])
            rows = await direct.execute(
                conn, writes._select_tasks, {"tenant": "acme", "ids": ["t002", "t000"]}
            )
            assert type(rows).__name__ == "CursorResult"
            assert [r.id for r in rows] == ["t000", "t002"]
            await conn.rollback()
    finally:
        await eng.dispose()


def test_plans_are_kept_per_statement_and_parameter_names(tmp_path: Path) -> None:
    eng = make_engines(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        dialect = eng.writer.dialect
        full = tuple(sorted(task_row(0)))
        a = direct._plan_of(_INSERT_TASKS, dialect, full)
        assert a is not None and direct._plan_of(_INSERT_TASKS, dialect, full) is a
        fewer = tuple(k for k in full if k not in ("url", "comment"))
        b = direct._plan_of(_INSERT_TASKS, dialect, fewer)
        assert b is not None and b is not a and "url" not in b.sql and "url" in a.sql
        # a column left to its Python-side default: no plan (SQLAlchemy fills it in)
        assert direct._plan_of(_INSERT_TASKS, dialect, ("id", "tenant", "title")) is None
    finally:
        asyncio.run(eng.dispose())
