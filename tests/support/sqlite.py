"""SQLite helpers for the tests of the inline connections: a migrated file's engines,
and a count of the trips a connection makes onto its thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from server.db import Engines, make_engines
from server.migrate import upgrade


@asynccontextmanager
async def migrated_engines(sqlite_url: str) -> AsyncIterator[Engines]:
    """``make_engines`` on a freshly migrated SQLite file, disposed afterwards."""
    await asyncio.to_thread(upgrade, sqlite_url)
    eng = make_engines(sqlite_url)
    try:
        yield eng
    finally:
        await eng.dispose()


def count_hand_offs(raw: Any, calls: list[str] | None = None) -> list[str]:
    """Wrap this aiosqlite connection's ``_execute`` (its one way onto its thread): the
    name of every function sent there is appended to ``calls`` (a new list if none)."""
    found: list[str] = [] if calls is None else calls
    inner = raw._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        found.append(getattr(fn, "__name__", repr(fn)))
        return await inner(fn, *args, **kwargs)

    raw._execute = counted
    return found
