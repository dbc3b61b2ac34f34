"""Engines for SQLite and PostgreSQL, one code path.

SQLite: one writer connection (writes queue in-process instead of fighting over the file
lock) taking ``BEGIN IMMEDIATE`` and running on the event loop's thread
(``server/sqlite_driver.py``), its checkpoints in a thread of their own
(``server/checkpoints.py``), and a small pool of autocommit readers in WAL mode.
PostgreSQL (asyncpg): one pool; reads run in autocommit (each is a single statement).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from server.checkpoints import Checkpointer
from server.errors import Unavailable
from server.sqlite_driver import BUSY_WAIT_MS, OneHopDbapi

log = logging.getLogger("taskbell.db")

# The database's own errors: what a read or write raises when the database is away,
# refuses, or is too slow. asyncpg's connect errors (refused, reset, timed out) are
# OSErrors that SQLAlchemy does not wrap in DBAPIError; a full pool raises PoolTimeout.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (DBAPIError, PoolTimeout, OSError)

# By default asyncpg waits 60 s to connect and forever for a statement's answer, so a
# PostgreSQL that stops answering (a network partition, a frozen host) hangs every
# request. Past these limits the call fails instead and the caller answers a clean 503.
PG_CONNECT_TIMEOUT_S = 5.0
PG_COMMAND_TIMEOUT_S = 10.0


@dataclass
class Engines:
    writer: AsyncEngine
    reader: AsyncEngine
    dialect: str
    checkpointer: Checkpointer | None = None
    # SQLite: readers on the loop's thread for the joins' short reads (the audience and
    # each feed's view); None elsewhere (``joins_reader`` is then the reader).
    joins: AsyncEngine | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    # SQLite: one of the joins' connections kept checked out between joins (a checkout
    # and its return cost a join more than its reads); see ``join_reads``.
    _held: AsyncConnection | None = field(default=None, repr=False, init=False)

    @property
    def joins_reader(self) -> AsyncEngine:
        return self.joins if self.joins is not None else self.reader

    @asynccontextmanager
    async def join_reads(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a join's reads, in one read transaction. On SQLite one of the
        joins' inline readers, kept between joins: a join's reads run without yielding,
        so one connection serves them all; a join that finds it in use (one that did
        wait) takes another from the pool. Elsewhere a pooled reader connection."""
        if self.joins is None:
            async with self.reader.connect() as pooled:
                yield pooled
            return
        held, self._held = self._held, None
        conn = held if held is not None else await self.joins.connect()
        try:
            async with conn.begin():
                yield conn
        except BaseException:
            await conn.close()  # (not kept: whatever went wrong, the next join starts fresh)
            raise
        if self._held is None:
            self._held = conn
        else:
            await conn.close()

    async def dispose(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        await self.writer.dispose()
        if self.reader.sync_engine.pool is not self.writer.sync_engine.pool:
            await self.reader.dispose()
        if self._held is not None:
            held, self._held = self._held, None
            await held.close()
        if self.joins is not None:
            await self.joins.dispose()


def _sqlite_engine(url: str, begin: str | None, pool_size: int, inline: bool) -> AsyncEngine:
    """``inline``: run on the loop's thread (the writer: ``server/sqlite_driver.py``)."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=30,
        # (check_same_thread: the inline writer uses the sqlite3 connection on the
        # loop's thread too; only ever one thread at a time.)
        connect_args={"timeout": BUSY_WAIT_MS / 1000, "check_same_thread": not inline},
        isolation_level="AUTOCOMMIT" if begin is None else None,
        module=OneHopDbapi(),  # one thread hand-off per statement (server/sqlite_driver.py)
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN (see the aiosqlite section of the
        # SQLAlchemy docs, "Serializable isolation / Savepoints / Transactional DDL").
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            f"PRAGMA busy_timeout={BUSY_WAIT_MS}",
        ):
            cursor.execute(pragma)
        if inline:
            # No lock waits and no checkpoints on the loop (server/sqlite_driver.py).
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.execute("PRAGMA busy_timeout=0")
            dbapi_connection.inline = True
        cursor.close()

    if begin is not None:

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            if not inline:
                conn.exec_driver_sql(begin)
                return
            # Straight through the adapter (the full execute path cost more than the
            # BEGIN), which still waits on the thread for a lock held elsewhere.
            try:
                conn.connection.dbapi_connection.run(_execute, begin)
            except sqlite3.Error as exc:
                raise DBAPIError.instance(begin, None, exc, sqlite3.Error) from exc

    return engine


def _execute(raw: sqlite3.Connection, sql: str) -> None:
    raw.execute(sql).close()


def make_engines(url: str) -> Engines:
    if url.startswith("sqlite"):
        if ":memory:" in url or url.rstrip("/").endswith("sqlite+aiosqlite:"):
            raise ValueError("use a SQLite file, not :memory: (several connections share it)")
        writer = _sqlite_engine(url, "BEGIN IMMEDIATE", 1, inline=True)
        reader = _sqlite_engine(url, "BEGIN", 4, inline=False)
        # A join's reads are a few indexed statements: through the thread each was a
        # hand-off costing more than the read. Inline, a join's read transaction runs
        # without yielding (so two connections serve any number of joins), and, like
        # the writer, never waits for a lock on the loop (server/sqlite_driver.py).
        joins = _sqlite_engine(url, "BEGIN", 2, inline=True)
        checkpointer = Checkpointer(str(make_url(url).database))
        checkpointer.start()
        return Engines(writer, reader, "sqlite", checkpointer, joins)
    engine = create_async_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=False,
        connect_args={"timeout": PG_CONNECT_TIMEOUT_S, "command_timeout": PG_COMMAND_TIMEOUT_S},
    )
    return Engines(engine, engine, engine.dialect.name)


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a database error ("" when the driver gives none: SQLite)."""
    return str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "")


def refused_statement(exc: BaseException) -> bool:
    """The database is there but refuses this statement: a value it cannot take
    (SQLSTATE class 22) or a statement it cannot run (42). Retrying cannot help, and it
    is no reason to fail anyone else's write."""
    return sqlstate(exc)[:2] in ("22", "42")


def unavailable(exc: BaseException) -> Unavailable:
    """The 503 for a database error (``database_busy`` for a locked SQLite file)."""
    log.warning("database unavailable: %s", type(exc).__name__)
    if "locked" in str(exc).lower():
        return Unavailable("the database is busy; retry shortly", code="database_busy")
    return Unavailable("the database is unreachable; retry shortly", code="database_unavailable")
