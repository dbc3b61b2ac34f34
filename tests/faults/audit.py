"""The database's own account of every feed, checked against the promise.

For each owner, from ``feed``, ``feed_event`` and ``task``:

- the kept events have seqs 1..seq with no gap or repeat, and ``feed.seq`` is the last;
- replaying them like a client does (added: the task joins, removed: it leaves, updated:
  it is there) never adds a present task, removes or updates an absent one, and the
  replayed set's size equals the event's ``count`` at every seq;
- the replay ends with exactly the owner's running tasks, and ``feed.count`` is their
  number;
- the postponed counts: each event's message carries ``counts`` equal to its row's
  ``count`` and ``postponed``; each event moves ``postponed`` by at most one, and a
  ``task.removed`` of a task not replayed (a change of the postponed count alone) by
  exactly one; ``feed.postponed`` is the number of the feed's postponed tasks.

Besides, it reads who follows what (role memberships, substitutions) so that clients'
feeds can be checked against ``Audit.feeds_of``, and each task's owner (for claims).

A write that was half applied (a task changed without its event, an event without its
change, a count bumped twice) breaks one of these. ``audit`` returns the problems found
(empty when all is well) and the truth the clients are compared with.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine


@dataclass
class OwnerTruth:
    seq: int = 0
    count: int = 0
    running: set[str] = field(default_factory=set)
    postponed: int = 0  # ``feed.postponed``, checked against the postponed tasks
    # seq -> (event type, task id, count), as the database keeps it
    events: dict[int, tuple[str, str, int]] = field(default_factory=dict)


@dataclass
class Audit:
    owners: dict[str, OwnerTruth]
    problems: list[str]
    tasks_by_status: dict[str, int]
    statuses: dict[str, str]  # task id (``tenant/id`` outside the default tenant) -> status
    # task id (as in ``statuses``) -> its owner (None: in its role's queue)
    task_owners: dict[str, str | None] = field(default_factory=dict)
    # (tenant, role) -> its members
    members: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # (tenant, substitution id) -> (absent user, substitute, state)
    substitutions: dict[tuple[str, str], tuple[str, str, str]] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(len(t.events) for t in self.owners.values())

    def feeds_of(self, tenant: str, user: str) -> list[str]:
        """The wire feeds ``user`` of ``tenant`` follows by the database's memberships and
        substitutions in force: own first, then roles, then the people stood in for
        (each sorted), as the server's ``feeds_of`` promises."""
        roles = sorted(r for (t, r), who in self.members.items() if t == tenant and user in who)
        absent = sorted(
            {
                u
                for (t, _), (u, substitute, state) in self.substitutions.items()
                if t == tenant and substitute == user and state == "active" and u != user
            }
        )
        return [f"user:{user}", *(f"role:{r}" for r in roles), *(f"user:{u}" for u in absent)]


def name_of(tenant: str, feed: str) -> str:
    """How the audit names a feed: a default-tenant person's own feed by the person's
    id (as the checks that predate roles and tenants do), any other by its key."""
    if tenant == "default" and feed.startswith("user:"):
        return feed[len("user:") :]
    return f"{tenant}/{feed}"


def _task_feed(owner: str | None, role: str | None) -> str:
    return f"user:{owner}" if owner is not None else f"role:{role}"


async def audit(conn: AsyncConnection, owners: Collection[str] | None = None) -> Audit:
    """Check every feed (or only those named in ``owners``, see ``name_of``) in the
    database behind ``conn``."""
    keep = None if owners is None else set(owners)

    def q(sql: str) -> Any:
        return conn.execute(text(sql))

    feeds = {
        name_of(str(tenant), str(feed)): (int(seq), int(count), int(postponed))
        for tenant, feed, seq, count, postponed in await q(
            'SELECT tenant, feed, seq, "count", postponed FROM feed'
        )
    }
    running: dict[str, set[str]] = {}
    waiting: dict[str, int] = {}  # feed name -> its postponed tasks
    by_status: dict[str, int] = {}
    statuses: dict[str, str] = {}
    task_owners: dict[str, str | None] = {}
    for tenant, task_id, owner, role, status in await q(
        "SELECT tenant, id, owner, role, status FROM task"
    ):
        name = name_of(str(tenant), _task_feed(owner, role))
        if keep is not None and name not in keep:
            continue
        tid = str(task_id) if tenant == "default" else f"{tenant}/{task_id}"
        statuses[tid] = str(status)
        task_owners[tid] = None if owner is None else str(owner)
        by_status[str(status)] = by_status.get(str(status), 0) + 1
        if status == "running":
            running.setdefault(name, set()).add(str(task_id))
        elif status == "postponed":
            waiting[name] = waiting.get(name, 0) + 1
    events: dict[str, list[tuple[int, str, str, int, int, Any]]] = {}
    rows = await q(
        'SELECT tenant, feed, seq, type, task_id, "count", postponed, message FROM feed_event'
        " ORDER BY tenant, feed, seq"
    )
    for tenant, feed, seq, kind, task_id, count, postponed, message in rows:
        name = name_of(str(tenant), str(feed))
        counts = orjson.loads(message).get("counts")
        events.setdefault(name, []).append(
            (int(seq), str(kind), str(task_id), int(count), int(postponed), counts)
        )
    wanted = set(feeds) | set(running) | set(events) | set(waiting)
    if owners is not None:
        wanted &= set(owners)
    problems: list[str] = []
    truth: dict[str, OwnerTruth] = {}
    for owner in sorted(wanted):
        seq, count, postponed = feeds.get(owner, (0, 0, 0))
        live = running.get(owner, set())
        kept = events.get(owner, [])
        t = truth[owner] = OwnerTruth(seq, count, set(live), postponed=postponed)
        seqs = [e[0] for e in kept]
        if seqs != list(range(1, seq + 1)):
            problems.append(f"{owner}: kept seqs are not 1..{seq} ({_span(seqs)})")
        replay: set[str] = set()
        before = 0  # the postponed count before each event
        for s, kind, task_id, n, p, counts in kept:
            t.events[s] = (kind, task_id, n)
            if counts != {"running": n, "postponed": p}:
                problems.append(f"{owner}@{s}: counts {counts} but the row has {n}, {p}")
            if abs(p - before) > 1:
                problems.append(f"{owner}@{s}: postponed moved from {before} to {p}")
            moved, before = p - before, p
            if kind == "task.removed" and task_id not in replay:
                # A change of the postponed count alone: it must move that count.
                if abs(moved) != 1:
                    problems.append(f"{owner}@{s}: {task_id} removed but not there")
            elif kind == "task.added":
                if task_id in replay:
                    problems.append(f"{owner}@{s}: {task_id} added twice")
                replay.add(task_id)
            elif kind == "task.removed":
                replay.discard(task_id)
            elif task_id not in replay:
                problems.append(f"{owner}@{s}: {task_id} updated but not there")
            if n != len(replay):
                problems.append(f"{owner}@{s}: count {n} but {len(replay)} tasks replayed")
        if replay != live:
            problems.append(
                f"{owner}: replay ends with {len(replay)} tasks, {len(live)} running "
                f"(only replayed {sorted(replay - live)[:5]}, only running "
                f"{sorted(live - replay)[:5]})"
            )
        if count != len(live):
            problems.append(f"{owner}: feed count {count} but {len(live)} running tasks")
        if postponed != waiting.get(owner, 0):
            problems.append(
                f"{owner}: feed postponed {postponed} but {waiting.get(owner, 0)} postponed tasks"
            )
        if kept and before != postponed:
            problems.append(f"{owner}: last event's postponed {before}, feed's {postponed}")
    members: dict[tuple[str, str], set[str]] = {}
    for tenant, role in await q("SELECT tenant, id FROM role"):
        members[(str(tenant), str(role))] = set()
    for tenant, role, user in await q("SELECT tenant, role, user_id FROM role_member"):
        members.setdefault((str(tenant), str(role)), set()).add(str(user))
    substitutions = {
        (str(tenant), str(sub_id)): (str(user), str(substitute), str(state))
        for tenant, sub_id, user, substitute, state in await q(
            "SELECT tenant, id, user_id, substitute, state FROM substitution"
        )
    }
    return Audit(truth, problems, by_status, statuses, task_owners, members, substitutions)


async def audit_url(url: str, owners: Collection[str] | None = None) -> Audit:
    """``audit`` through a short-lived engine on ``url`` (SQLite or PostgreSQL)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await audit(conn, owners)
    finally:
        await engine.dispose()


def _span(seqs: list[int]) -> str:
    if not seqs:
        return "none"
    return f"{len(seqs)} kept, {seqs[0]}..{seqs[-1]}"
