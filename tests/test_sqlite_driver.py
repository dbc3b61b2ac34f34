"""The SQLite adapter (``server/sqlite_driver.py``): one thread hand-off per statement
for the readers, none for the writer (a lock held elsewhere waited for on its thread,
checkpoints in their own thread), and everything SQLAlchemy reads off a cursor still
right (rows, rowcount, lastrowid, executemany, errors, transactions). On a real SQLite
file through ``make_engines``."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.exc import IntegrityError

from server.db import Engines, make_engines
from server.sqlite_driver import INLINE_MAX_ROWS, on_thread
from tests.support.sqlite import count_hand_offs


@pytest.fixture
async def engines(sqlite_url: str) -> AsyncIterator[Engines]:
    eng = make_engines(sqlite_url)
    async with eng.writer.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    yield eng
    await eng.dispose()


async def test_a_select_is_one_hand_off_and_brings_its_rows(engines: Engines) -> None:
    async with engines.writer.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES ('a'), ('b')"))
    async with engines.reader.connect() as conn:
        await conn.execute(text("SELECT 1"))  # (the transaction's BEGIN)
        raw: Any = (await conn.get_raw_connection()).driver_connection
        calls = count_hand_offs(raw)
        rows = (await conn.execute(text("SELECT id, name FROM t ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "b")]
        assert calls == ["_run"], "one hand-off for the whole statement"
        none = (await conn.execute(text("SELECT id FROM t WHERE name = 'z'"))).first()
        assert none is None
        del raw._execute  # (the class's own again)


async def test_writes_report_rowcount_lastrowid_and_executemany(engines: Engines) -> None:
    async with engines.writer.begin() as conn:
        result = await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        assert result.lastrowid == 1
        many = await conn.execute(
            text("INSERT INTO t (name) VALUES (:n)"), [{"n": "b"}, {"n": "c"}]
        )
        assert many.rowcount == 2
        updated = await conn.execute(text("UPDATE t SET name = name || '!' WHERE id > 1"))
        assert updated.rowcount == 2
    async with engines.reader.connect() as conn:
        names = (await conn.execute(text("SELECT name FROM t ORDER BY id"))).scalars().all()
    assert names == ["a", "b!", "c!"]


async def test_an_error_is_sqlalchemys_and_the_transaction_rolls_back(engines: Engines) -> None:
    with pytest.raises(IntegrityError):
        async with engines.writer.begin() as conn:
            await conn.execute(text("INSERT INTO t (name) VALUES ('x')"))
            await conn.execute(text("INSERT INTO t (name) VALUES ('x')"))
    async with engines.reader.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
    async with engines.writer.begin() as conn:  # the connection is still good
        await conn.execute(text("INSERT INTO t (name) VALUES ('x')"))
    async with engines.reader.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 1


async def test_streaming_still_works(engines: Engines) -> None:
    async with engines.writer.begin() as conn:
        await conn.execute(
            text("INSERT INTO t (name) VALUES (:n)"), [{"n": str(i)} for i in range(5)]
        )
    async with engines.reader.connect() as conn:
        result = await conn.stream(text("SELECT name FROM t ORDER BY id"))
        names = [row[0] async for row in result]
    assert names == ["0", "1", "2", "3", "4"]


# ---------------------------------------------------------------- the inline writer


def count_all_hand_offs(raw: Any) -> list[str]:
    """As ``count_hand_offs``, naming also what a busy wait (``_waiting``) runs."""
    calls: list[str] = []
    inner = raw._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__name__", repr(fn))
        if name == "_waiting":
            name += ":" + getattr(args[1], "__name__", repr(args[1]))
        calls.append(name)
        return await inner(fn, *args, **kwargs)

    raw._execute = counted
    return calls


async def writer_raw(engines: Engines) -> Any:
    async with engines.writer.connect() as conn:
        return (await conn.get_raw_connection()).driver_connection


async def test_a_write_transaction_makes_no_hand_off(engines: Engines) -> None:
    raw = await writer_raw(engines)  # (the writer's one pooled connection)
    calls = count_all_hand_offs(raw)
    async with engines.writer.begin() as conn:  # BEGIN IMMEDIATE
        await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), [{"n": "b"}, {"n": "c"}])
        rows = (await conn.execute(text("SELECT name FROM t ORDER BY id"))).scalars().all()
        assert rows == ["a", "b", "c"]
    with pytest.raises(IntegrityError):  # and a ROLLBACK
        async with engines.writer.begin() as conn:
            await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
    assert calls == [], "statements, BEGIN, COMMIT and ROLLBACK on the loop's thread"
    async with engines.writer.connect() as conn:
        pragma = await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")
        assert pragma.scalar() == 0, "the writer never checkpoints on the loop"
    del raw._execute


async def test_on_thread_hands_the_writers_statements_off(engines: Engines) -> None:
    raw = await writer_raw(engines)
    calls = count_all_hand_offs(raw)
    async with engines.writer.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        with on_thread():
            deleted = await conn.execute(text("DELETE FROM t"))
        assert deleted.rowcount == 1
    assert calls == ["_waiting:_run"]
    del raw._execute


async def test_a_statement_of_many_rows_is_handed_off(engines: Engines) -> None:
    raw = await writer_raw(engines)
    calls = count_all_hand_offs(raw)
    many = [{"n": str(i)} for i in range(INLINE_MAX_ROWS + 1)]
    few = [{"n": f"f{i}"} for i in range(INLINE_MAX_ROWS)]
    async with engines.writer.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), many)
        await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), few)
    assert calls == ["_waiting:_run_many"], "its SQLite work off the loop, the few inline"
    del raw._execute


async def test_a_lock_held_elsewhere_is_waited_for_off_the_loop(engines: Engines) -> None:
    """Another process holds the write lock: the writer's BEGIN waits on its thread, so
    the loop goes on meanwhile (here: it is the loop that lets the lock go)."""
    path = make_url(str(engines.writer.url)).database
    assert path is not None
    raw = await writer_raw(engines)
    waiting = asyncio.Event()
    inner = raw._execute

    async def spied(fn: Any, *args: Any, **kwargs: Any) -> Any:
        waiting.set()
        return await inner(fn, *args, **kwargs)

    raw._execute = spied
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:

        async def write() -> None:
            async with engines.writer.begin() as conn:
                await conn.execute(text("INSERT INTO t (name) VALUES ('late')"))

        task = asyncio.create_task(write())
        await asyncio.wait_for(waiting.wait(), 30)
        assert not task.done()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await asyncio.wait_for(task, 30)
    del raw._execute
    async with engines.reader.connect() as conn:
        assert (await conn.execute(text("SELECT name FROM t"))).scalars().all() == ["late"]
    async with engines.writer.connect() as conn:  # the wait is off again afterwards
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 0


async def test_the_wal_is_checkpointed_off_the_loop(engines: Engines, tmp_path: Path) -> None:
    """The rows reach the database file itself (a copy of it without its WAL holds them),
    although the writer never checkpoints: the checkpointer's thread copied them."""
    assert engines.checkpointer is not None
    path = make_url(str(engines.writer.url)).database
    assert path is not None
    async with engines.writer.begin() as conn:
        await conn.execute(
            text("INSERT INTO t (name) VALUES (:n)"), [{"n": str(i)} for i in range(2000)]
        )
    copied = 0
    for _ in range(300):  # (it looks at least every second)
        copied = _rows_in_file_alone(path, tmp_path / "alone.db")
        if copied == 2000:
            break
        await asyncio.sleep(0.1)
    assert copied == 2000
    assert engines.checkpointer.done > 0


def _rows_in_file_alone(path: str, copy: Path) -> int:
    shutil.copyfile(path, copy)
    for leftover in (Path(f"{copy}-wal"), Path(f"{copy}-shm")):
        leftover.unlink(missing_ok=True)
    probe = sqlite3.connect(copy)
    try:
        return int(probe.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.OperationalError:  # (no table t yet in the file itself)
        return 0
    finally:
        probe.close()
