"""A feed log in memory: the twin of ``server.feedlog.SqlFeedLog`` for hub tests that
need no database, keyed by feed key (``server.feeds``). Tests append events with ``add``
(as a commit would) and decide what the broker delivers themselves; ``tasks`` is what a
snapshot of a key lists; ``audiences`` is who follows what ((tenant, user) → wire feeds,
own feed only when absent); ``fail`` makes every read raise a database error, and
``hold`` keeps a view (read already) from being answered until the test sets it.
``reads`` counts every read, ``resumes`` the views read per key."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from server.changes import Logged
from server.feedlog import EVENTS_PAGE, Replay, Snapshot
from server.feeds import split_key, user_feed
from server.wire import TaskJSON, dumps


def task_json(task_id: str, owner: str | None = "alice", role: str | None = None) -> TaskJSON:
    """A running task as a snapshot lists it (only ``id`` matters to the hub)."""
    return {
        "id": task_id,
        "owner": owner,
        "role": role,
        "acted_by": None,
        "title": task_id,
        "kind": "activity",
        "status": "running",
        "process": None,
        "record": None,
        "url": None,
        "postponed_until": None,
        "created_at": "2026-01-01T00:00:00.000000Z",
        "updated_at": "2026-01-01T00:00:00.000000Z",
        "due_at": None,
        "priority": "normal",
        "overdue": False,
        "actions": None,
        "outcome": None,
        "comment": None,
        "completed_by": None,
        "follows": None,
    }


class MemoryFeedLog:
    def __init__(self, *, replay_limit: int = 1000) -> None:
        self.replay_limit = replay_limit
        self.events: dict[str, list[Logged]] = {}
        self.tasks: dict[str, list[TaskJSON]] = {}
        self.audiences: dict[tuple[str, str], list[str]] = {}
        self.reads = 0
        self.resumes: Counter[str] = Counter()
        self.fail: BaseException | None = None
        self.hold: asyncio.Event | None = None  # resume answers once it is set

    def add(self, key: str, count: int = 1) -> tuple[int, str]:
        """Append the next event of feed ``key``; returns its seq and message."""
        log = self.events.setdefault(key, [])
        seq = len(log) + 1
        message = dumps(
            {
                "type": "task.added",
                "feed": split_key(key)[1],
                "seq": seq,
                "count": count,
                "task": {"id": f"t{seq}"},
            }
        )
        log.append(Logged(seq, count, message))
        return seq, message

    def _read(self) -> None:
        self.reads += 1
        if self.fail is not None:
            raise self.fail

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[MemoryFeedLog]:
        yield self  # (no connections here: each read is counted as before)

    async def resume(self, key: str, since: int | None) -> Snapshot | Replay:
        self._read()
        self.resumes[key] += 1
        log = list(self.events.get(key, []))
        seq = len(log)
        count = log[-1].count if log else 0
        view: Snapshot | Replay = Snapshot(seq, count, list(self.tasks.get(key, [])))
        if since is not None and since <= seq and seq - since <= self.replay_limit:
            view = Replay(seq, count, [e.message for e in log if e.seq > since])
        if self.hold is not None:
            # The view is read; what is committed from now on is not in it.
            await self.hold.wait()
        return view

    async def events_after(self, key: str, after: int, limit: int = EVENTS_PAGE) -> list[Logged]:
        self._read()
        return [e for e in self.events.get(key, []) if after < e.seq <= after + limit]

    async def latest_seqs(self, keys: Iterable[str]) -> dict[str, int]:
        self._read()
        return {k: len(self.events[k]) for k in keys if k in self.events}

    async def audience(self, tenant: str, user: str) -> list[str]:
        self._read()
        return list(self.audiences.get((tenant, user), [user_feed(user)]))
