"""Prebuilt statements run straight on the inline SQLite connections.

On the connections that run on the event loop's thread (the writer and the joins'
readers, ``server/sqlite_driver.py``) SQLite itself takes a few microseconds for one of
the hot statements, and SQLAlchemy's ``Connection.execute`` around it about thirty: the
compiled cache's lookup, ``construct_params``, an execution context, the result's
metadata. In the profile of a change at 1,000 changes/s that wrapping was about 30 % of
the server's CPU, against 6 % in SQLite. ``execute(conn, statement, parameters)`` is a
drop-in for ``conn.execute`` for the statements the write path and the joins build once:

- the statement is compiled once per set of parameter names (as SQLAlchemy compiles it
  for that call), and the plan is kept: the SQL, which parameter goes where, and
  SQLAlchemy's own bind and result processors for each column's type, so a value is
  stored and read exactly as ``conn.execute`` would store and read it;
- it runs on the sqlite3 connection, in the transaction SQLAlchemy opened;
- a database error is SQLAlchemy's (``DBAPIError.instance``: ``IntegrityError`` and so
  on, with the sqlite3 error as ``orig``), so callers handle one kind.

A statement with more rows or values than the inline limits
(``server/sqlite_driver.py``) runs the same way on the connection's thread, with its
busy wait, while the loop goes on. Everything else goes through ``conn.execute``
unchanged: PostgreSQL, any connection that is not inline, a statement inside
``on_thread()``, an empty ``IN`` list, several parameter sets with an expanding ``IN``,
and a statement this module cannot plan (Python-side column defaults, literal-execute
parameters, result columns with duplicate or unusual names). Inline, none of these
statements waits for a lock: in WAL mode a read never does, and the writer's statements
run inside the transaction whose ``BEGIN IMMEDIATE`` already took the write lock.
``tests/test_direct.py`` checks that the two ways agree.
"""

from __future__ import annotations

import collections
import keyword
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.base import Executable

from server.sqlite_driver import INLINE_MAX_ROWS, INLINE_MAX_VALUES, inline_adapter

Params = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
Processor = Any  # a SQLAlchemy bind or result processor: value -> value, or None

# Plans kept per (statement, parameter names); the statements are built once, so this
# stays small. Past the bound (someone passes statements built per call) it starts over.
PLANS_MAX = 512


class Rows(Protocol):
    """What ``execute`` gives: the part of SQLAlchemy's ``CursorResult`` the callers use."""

    @property
    def rowcount(self) -> int: ...

    def __iter__(self) -> Iterator[Any]: ...

    def first(self) -> Any: ...

    def all(self) -> Sequence[Any]: ...

    def scalar(self) -> Any: ...


class Result:
    """Rows read straight from SQLite, each a named tuple with ``_mapping`` like
    SQLAlchemy's ``Row``."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return list(self._rows)

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None


@dataclass(frozen=True, slots=True)
class _Bind:
    key: str  # the parameter's name in the caller's dict
    name: str  # its name in the compiled statement
    required: bool
    value: Any  # when not required and not given
    process: Processor
    expanding: bool


@dataclass(slots=True)
class _Plan:
    statement: Any  # kept, so that its id names no other statement while planned
    sql: str
    binds: tuple[_Bind, ...]
    row: type[tuple[Any, ...]] | None  # the row type (None: the statement returns no rows)
    results: tuple[Processor, ...] | None  # None: no column needs processing
    expanding: bool
    rendered: dict[tuple[int, ...], str] = field(default_factory=dict)

    def sql_for(self, lengths: tuple[int, ...]) -> str:
        """The SQL with each expanding ``IN`` list given its length of placeholders."""
        sql = self.rendered.get(lengths)
        if sql is None:
            sql = self.sql
            expanding = [b for b in self.binds if b.expanding]
            for bind, n in zip(expanding, lengths, strict=True):
                sql = sql.replace(f"__[POSTCOMPILE_{bind.name}]", ", ".join("?" * n), 1)
            self.rendered[lengths] = sql
        return sql


_plans: dict[tuple[int, tuple[str, ...]], _Plan | None] = {}


def _row_type(keys: list[str]) -> type[tuple[Any, ...]] | None:
    if len(set(keys)) != len(keys):
        return None
    if any(not k.isidentifier() or keyword.iskeyword(k) or k.startswith("_") for k in keys):
        return None
    base = collections.namedtuple("Row", keys)  # type: ignore[misc]
    return type("Row", (base,), {"__slots__": (), "_mapping": property(base._asdict)})


def plan(statement: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    """How to run ``statement`` with parameters named ``keys`` on SQLite, or None when
    it must go through SQLAlchemy."""
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys))
    if (
        compiled.positiontup is None
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.literal_execute_params
        or compiled.escaped_bind_names
    ):
        return None
    binds: list[_Bind] = []
    for name in compiled.positiontup:
        bp = compiled.binds[name]
        if bp.callable is not None:
            return None
        impl = bp.type.dialect_impl(dialect)
        binds.append(
            _Bind(bp.key, name, bp.required, bp.value, impl.bind_processor(dialect), bp.expanding)
        )
    row: type[tuple[Any, ...]] | None = None
    results: tuple[Processor, ...] | None = None
    columns = list(statement.exported_columns)  # (the RETURNING ones, for DML)
    if columns:
        row = _row_type([c.key for c in columns])
        if row is None:
            return None
        procs = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
        results = procs if any(p is not None for p in procs) else None
    expanding = any(b.expanding for b in binds)
    return _Plan(statement, compiled.string, tuple(binds), row, results, expanding)


def _plan_of(statement: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Plan | None:
    slot = (id(statement), keys)
    try:
        return _plans[slot]
    except KeyError:
        pass
    if len(_plans) >= PLANS_MAX:
        _plans.clear()
    found = plan(statement, dialect, keys)
    _plans[slot] = found
    return found


class _Fallback(Exception):
    """This call goes through SQLAlchemy after all."""


def _values(p: _Plan, params: Mapping[str, Any]) -> tuple[list[Any], tuple[int, ...]]:
    out: list[Any] = []
    lengths: list[int] = []
    for b in p.binds:
        if b.key in params:
            value = params[b.key]
        elif b.name in params:
            value = params[b.name]
        elif b.required:
            raise _Fallback  # (SQLAlchemy says what is missing)
        else:
            value = b.value
        if b.expanding:
            items = list(value)
            if not items:
                raise _Fallback  # (SQLAlchemy renders an empty IN its own way)
            lengths.append(len(items))
            out.extend(items if b.process is None else [b.process(v) for v in items])
        else:
            out.append(value if b.process is None else b.process(value))
    return out, tuple(lengths)


def _shape(p: _Plan, raw_rows: list[Any]) -> list[Any]:
    row = p.row
    assert row is not None
    procs = p.results
    if procs is None:
        return [row._make(r) for r in raw_rows]  # type: ignore[attr-defined]
    return [
        row._make(v if f is None else f(v) for f, v in zip(procs, r, strict=True))  # type: ignore[attr-defined]
        for r in raw_rows
    ]


@dataclass(frozen=True, slots=True)
class _Job:
    """One call, its values bound: ``sets`` parameter sets for ``sql``, run with
    ``executemany`` (``many``) or one ``execute`` each; ``heavy`` when it goes to the
    connection's thread."""

    sql: str
    sets: list[list[Any]]
    many: bool
    heavy: bool

    def __call__(self, raw: sqlite3.Connection) -> tuple[list[Any], int]:
        """On whichever thread runs it: the raw rows and the row count."""
        if self.many:
            return [], raw.executemany(self.sql, self.sets).rowcount
        rows: list[Any] = []
        count = 0
        for values in self.sets:
            cursor = raw.execute(self.sql, values)
            rows.extend(cursor.fetchall())
            count += max(cursor.rowcount, 0)
        return rows, count if len(self.sets) > 1 else cursor.rowcount


def _job(p: _Plan, params: Params) -> _Job:
    """Bind ``params`` to ``p``; raises ``_Fallback`` when SQLAlchemy's way must run it."""
    if params is None or isinstance(params, Mapping):
        values, lengths = _values(p, params or {})
        sql = p.sql_for(lengths) if p.expanding else p.sql
        return _Job(sql, [values], False, len(values) > INLINE_MAX_VALUES)
    if not params or p.expanding:
        raise _Fallback
    sets = [_values(p, one)[0] for one in params]
    # (RETURNING: sqlite3's executemany returns no rows, so one execute per set)
    return _Job(p.sql, sets, p.row is None, len(sets) > INLINE_MAX_ROWS)


async def execute(conn: AsyncConnection, statement: Executable, parameters: Params = None) -> Rows:
    """``conn.execute(statement, parameters)``, straight on SQLite where it can be (see
    the module's docstring). For statements built once, not per call."""
    adapt = inline_adapter(conn)
    if adapt is not None:
        if parameters is None or isinstance(parameters, Mapping):
            keys = tuple(sorted(parameters or ()))
        else:
            keys = tuple(sorted(parameters[0])) if parameters else ()
        p = _plan_of(statement, conn.dialect, keys)
        if p is not None:
            try:
                job = _job(p, parameters)
            except _Fallback:
                pass
            else:
                try:
                    if job.heavy:  # (the loop goes on while SQLite works)
                        rows, count = await adapt.on_thread(job)
                    else:
                        rows, count = job(adapt.raw)
                except sqlite3.Error as exc:
                    raise DBAPIError.instance(
                        p.sql, parameters, exc, sqlite3.Error, dialect=conn.dialect
                    ) from exc
                return Result(_shape(p, rows) if p.row is not None else [], count)
    result: Rows = await conn.execute(statement, parameters)
    return result


async def scalar(conn: AsyncConnection, statement: Executable, parameters: Params = None) -> Any:
    """``conn.scalar``: the first column of the first row, or None."""
    return (await execute(conn, statement, parameters)).scalar()
