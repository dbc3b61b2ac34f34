"""SQLAlchemy's aiosqlite adapter, with one thread hand-off per statement.

aiosqlite runs each call on the connection's own thread and wakes the event loop with
the answer: a hand-off costs a queue put, a thread wake-up and a loop wake-up. Through
SQLAlchemy's adapter a SELECT took four of them (make the cursor, execute, fetch all,
close the cursor) and any other statement three, which in the profiles of a connect
and of a single change cost more than the SQL itself. Here a statement is one function
run on that thread (cursor, execute, fetch, close) and one answer back.

Only the plain cursor changes: server-side cursors (``stream``), transactions, commit,
rollback and errors are SQLAlchemy's and aiosqlite's own. It leans on two things that
are not public API, ``aiosqlite.Connection._execute`` (queue a function on the
connection's thread) and ``_conn`` (its sqlite3 connection, used on that thread only);
``tests/test_sqlite_driver.py`` pins that they behave as this module needs.
"""

from __future__ import annotations

import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

Answer = tuple[Any, list[Any], int, int | None]  # description, rows, rowcount, lastrowid


def _run(conn: sqlite3.Connection, operation: str, parameters: Any) -> Answer:
    """One statement, on the connection's thread."""
    cursor = conn.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _run_many(conn: sqlite3.Connection, operation: str, seq_of_parameters: Any) -> Answer:
    cursor = conn.cursor()
    try:
        cursor.executemany(operation, seq_of_parameters)
        return None, [], cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor that holds no aiosqlite cursor: each statement makes, uses and closes
    its own on the connection's thread, and brings back every row."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        # (The parent's __init__ would make an aiosqlite cursor: one hand-off.)
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    async def _async_soft_close(self) -> None:
        return None  # nothing is held open: the rows are here already

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            answer: Answer = await conn._execute(  # type: ignore[no-untyped-call]
                _run, conn._conn, operation, parameters
            )
        self._take(answer)
        return None

    async def _executemany_async(self, operation: Any, params: Any) -> Any:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            answer: Answer = await conn._execute(  # type: ignore[no-untyped-call]
                _run_many, conn._conn, operation, params
            )
        self._take(answer)
        return None

    def _take(self, answer: Answer) -> None:
        self._description, rows, self._rowcount, self._lastrowid = answer
        self._rows = collections.deque(rows)


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


class OneHopDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to give ``create_async_engine(..., module=...)``."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)
        return OneHopConnection(self, adapted._connection)
