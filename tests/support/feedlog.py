"""A feed log in memory: the twin of ``server.feedlog.SqlFeedLog`` for hub tests that
need no database. Tests append events with ``add`` (as a commit would) and decide what
the broker delivers themselves; ``fail`` makes every read raise a database error, and
``hold`` keeps a view (read already) from being answered until the test sets it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from server.changes import Logged
from server.feedlog import EVENTS_PAGE, Replay, Snapshot
from server.wire import dumps


class MemoryFeedLog:
    def __init__(self, *, replay_limit: int = 1000) -> None:
        self.replay_limit = replay_limit
        self.events: dict[str, list[Logged]] = {}
        self.reads = 0
        self.fail: BaseException | None = None
        self.hold: asyncio.Event | None = None  # resume answers once it is set

    def add(self, owner: str, count: int = 1) -> tuple[int, str]:
        """Append the owner's next event; returns its seq and message."""
        log = self.events.setdefault(owner, [])
        seq = len(log) + 1
        message = dumps(
            {"type": "task.added", "seq": seq, "count": count, "task": {"id": f"t{seq}"}}
        )
        log.append(Logged(seq, count, message))
        return seq, message

    def _read(self) -> None:
        self.reads += 1
        if self.fail is not None:
            raise self.fail

    async def resume(self, owner: str, since: int | None) -> Snapshot | Replay:
        self._read()
        log = list(self.events.get(owner, []))
        seq = len(log)
        count = log[-1].count if log else 0
        view: Snapshot | Replay = Snapshot(seq, count, [])
        if since is not None and since <= seq and seq - since <= self.replay_limit:
            view = Replay(seq, count, [e.message for e in log if e.seq > since])
        if self.hold is not None:
            # The view is read; what is committed from now on is not in it.
            await self.hold.wait()
        return view

    async def events_after(self, owner: str, after: int, limit: int = EVENTS_PAGE) -> list[Logged]:
        self._read()
        return [e for e in self.events.get(owner, []) if after < e.seq <= after + limit]

    async def latest_seqs(self, owners: Iterable[str]) -> dict[str, int]:
        self._read()
        return {o: len(self.events[o]) for o in owners if o in self.events}

    async def audience(self, tenant: str, user: str) -> list[str]:
        return [f"user:{user}"]
