"""The SQLite adapter (``server/sqlite_driver.py``): one thread hand-off per statement,
and everything SQLAlchemy reads off a cursor still right (rows, rowcount, lastrowid,
executemany, errors, transactions). On a real SQLite file through ``make_engines``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from server.db import Engines, make_engines


@pytest.fixture
async def engines(sqlite_url: str) -> AsyncIterator[Engines]:
    eng = make_engines(sqlite_url)
    async with eng.writer.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    yield eng
    await eng.dispose()


def count_hand_offs(raw: Any) -> list[str]:
    """Wrap this aiosqlite connection's ``_execute`` (its one way onto its thread)."""
    calls: list[str] = []
    inner = raw._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await inner(fn, *args, **kwargs)

    raw._execute = counted
    return calls


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
