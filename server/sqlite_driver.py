"""SQLAlchemy's aiosqlite adapter: one thread hand-off per statement, none for the writer.

aiosqlite runs each call on the connection's own thread and wakes the event loop with
the answer: a hand-off costs a queue put, a thread wake-up and a loop wake-up. Through
SQLAlchemy's adapter a SELECT took four of them (make the cursor, execute, fetch all,
close the cursor) and any other statement three, which in the profiles of a connect
and of a single change cost more than the SQL itself. Here a statement is one function
run on that thread (cursor, execute, fetch, close) and one answer back.

Only the plain cursor (and the inline writer's commit and rollback) changes:
server-side cursors (``stream``), the readers' transactions and errors are SQLAlchemy's
and aiosqlite's own. It leans on two things that
are not public API, ``aiosqlite.Connection._execute`` (queue a function on the
connection's thread) and ``_conn`` (its sqlite3 connection, used on that thread, or on
the loop's by the inline writer, never on both at once);
``tests/test_sqlite_driver.py`` pins that they behave as this module needs.

The writer's connection runs inline (``inline = True``, set by ``server/db.py``): its
statements, BEGIN, COMMIT and ROLLBACK run on the event loop's own thread, with no
hand-off at all. A lone change's transaction was about a dozen hand-offs, over half of
its CPU (``bench.core --concurrency 1``: 2.7 ms, 1.2 ms inline). It is safe for the
writer because in WAL mode a write transaction never waits once it holds the write
lock, and with ``synchronous=NORMAL`` a commit does not sync to disk; the two things that
could stall the loop are kept off it:

- waiting for the lock: the writer's busy timeout is 0, so a statement that meets a lock
  held by another process (``SQLITE_BUSY``, in practice only ``BEGIN IMMEDIATE``) fails at
  once and is run again on the connection's thread with the usual busy wait
  (``BUSY_WAIT_MS``), where the loop goes on meanwhile;
- checkpoints: the writer does not checkpoint on commit (``wal_autocheckpoint=0``);
  ``server/checkpoints.py`` does, in its own thread.

A statement known to be long (pruning old events) runs on the thread inside
``on_thread()``. The joins' readers (``Engines.joins``: the audience and each feed's
view, a few indexed statements whose rows the loop turns into the snapshot anyway) run
inline too; the other readers keep one hand-off per statement: a long read (a search,
the statistics, a catch-up page, the sweep) must not hold up every socket.

On the inline connections the hot statements skip SQLAlchemy's execute path
altogether (``server/direct.py``, through ``inline_adapter``); BEGIN goes through
``run`` (``server/db.py``).
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Generator, Iterator
from contextvars import ContextVar
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_, in_greenlet

Answer = tuple[Any, list[Any], int, int | None]  # description, rows, rowcount, lastrowid

BUSY_WAIT_MS = 5000  # how long a statement waits for a lock held by another connection
# A statement of the writer with more rows or values than this runs on the thread: its
# SQLite work grows with them (a batch of 500 creates held the loop ~50 ms inline).
INLINE_MAX_ROWS = 32
INLINE_MAX_VALUES = 256
_SQLITE_BUSY = 5

_ON_THREAD: ContextVar[bool] = ContextVar("taskbell_sqlite_on_thread", default=False)


@contextlib.contextmanager
def on_thread() -> Iterator[None]:
    """Run the inline writer's statements of this block on its thread instead (for a
    statement that may take long: the loop goes on meanwhile). No effect elsewhere."""
    token = _ON_THREAD.set(True)
    try:
        yield
    finally:
        _ON_THREAD.reset(token)


def _busy(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    return isinstance(exc, sqlite3.OperationalError) and code & 0xFF == _SQLITE_BUSY


def _waiting(conn: sqlite3.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn`` with the busy wait on, on the connection's thread (the inline writer's busy
    timeout is otherwise 0)."""
    conn.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}").close()
    try:
        return fn(conn, *args)
    finally:
        conn.execute("PRAGMA busy_timeout=0").close()


def inline_adapter(conn: Any) -> OneHopConnection | None:
    """The adapter under ``conn`` (an ``AsyncConnection``) when it runs inline and nothing
    asks for the thread (``on_thread()``); None otherwise (PostgreSQL too)."""
    if _ON_THREAD.get():
        return None
    sync = conn.sync_connection
    if sync is None:
        return None
    adapt = sync.connection.dbapi_connection
    if not getattr(adapt, "inline", False):
        return None
    found: OneHopConnection = adapt
    return found


class _Done(Awaitable[None]):
    """An awaitable that is ready at once: SQLAlchemy's async layer insists that every
    ``execute`` awaited something (``AwaitRequired``), and an inline one has nothing to
    wait for."""

    def __await__(self) -> Generator[None, None, None]:
        return (yield from ())


_DONE = _Done()


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

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        adapt: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        if not adapt.inline:
            return super().execute(operation, parameters)
        try:
            heavy = parameters is not None and len(parameters) > INLINE_MAX_VALUES
            self._take(adapt.run(_run, operation, parameters, heavy=heavy))
        except Exception as error:
            adapt._handle_exception(error)
        return None

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        adapt: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        if not adapt.inline:
            return super().executemany(operation, seq_of_parameters)
        try:
            heavy = len(seq_of_parameters) > INLINE_MAX_ROWS
            self._take(adapt.run(_run_many, operation, seq_of_parameters, heavy=heavy))
        except Exception as error:
            adapt._handle_exception(error)
        return None

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
    """``inline``: run on the loop's thread (the module's docstring says when and why)."""

    __slots__ = ("inline",)
    _cursor_cls = OneHopCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.inline = False

    def run(self, fn: Callable[..., Any], *args: Any, heavy: bool = False) -> Any:
        """``fn(sqlite3 connection, *args)`` inline; on the thread with the busy wait if
        it meets a lock, is ``heavy`` or inside ``on_thread()``. Called from
        SQLAlchemy's greenlet."""
        raw: sqlite3.Connection = self._connection._conn
        if not heavy and not _ON_THREAD.get():
            try:
                answer = fn(raw, *args)
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise
            else:
                if in_greenlet():
                    await_(_DONE)
                return answer
        return await_(self._on_thread(raw, fn, *args))

    @property
    def raw(self) -> sqlite3.Connection:
        """The sqlite3 connection (for use on the loop's thread when ``inline``)."""
        conn: sqlite3.Connection = self._connection._conn
        return conn

    async def on_thread(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn(sqlite3 connection)`` on the connection's thread with the busy wait, from
        async code (``run`` is for SQLAlchemy's greenlet)."""
        return await self._on_thread(self.raw, fn)

    async def _on_thread(self, raw: sqlite3.Connection, fn: Callable[..., Any], *args: Any) -> Any:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._execute_mutex:
            return await conn._execute(_waiting, raw, fn, *args)  # type: ignore[no-untyped-call]

    def commit(self) -> None:
        if not self.inline:
            return super().commit()
        if self._connection._connection:  # (none once closed: nothing to commit)
            try:
                self.run(sqlite3.Connection.commit)
            except Exception as error:
                self._handle_exception(error)
        return None

    def rollback(self) -> None:
        if not self.inline:
            return super().rollback()
        if self._connection._connection:
            try:
                self.run(sqlite3.Connection.rollback)
            except Exception as error:
                self._handle_exception(error)
        return None


class OneHopDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module to give ``create_async_engine(..., module=...)``."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)
        return OneHopConnection(self, adapted._connection)
