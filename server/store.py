"""The store: every read and write of tasks and feeds, in SQL (SQLite or PostgreSQL).

The write path (``apply``) is one transaction for any number of operations:

1. read (and lock, on PostgreSQL) every task the operations name, in id order;
2. decide each operation with the pure rules of ``transitions``;
3. bump each touched owner's feed row once (``seq += n, count += delta``, owners in
   sorted order, so concurrent transactions never deadlock), which also locks it;
4. write the tasks and one ``feed_event`` per effect, holding the exact message.

So a batch of N changes costs a handful of statements, not N transactions. The caller
publishes the returned envelopes after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import paging, processes
from server import transitions as rules
from server.changes import Applied, Envelope, Op, TxHook
from server.clock import as_utc, now_utc
from server.db import Engines
from server.errors import ApiError, Unavailable
from server.models import event_t, feed_t, task_t
from server.transitions import Effect, Outcome, TaskState
from server.wire import (
    EventMessage,
    Postpone,
    Status,
    TaskCreate,
    TaskJSON,
    TaskPatch,
    dumps,
)

log = logging.getLogger("taskbell.store")

T = TypeVar("T")
WriteFn = Callable[[AsyncConnection, datetime], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    count: int
    tasks: list[TaskJSON]


@dataclass(frozen=True, slots=True)
class Replay:
    seq: int
    count: int
    messages: list[str]


_TASK_COLUMNS = [c.name for c in task_t.columns]
_SNAPSHOT = (
    select(feed_t.c.seq.label("feed_seq"), feed_t.c.count.label("feed_count"), task_t)
    .select_from(
        feed_t.outerjoin(
            task_t,
            and_(task_t.c.owner == feed_t.c.owner, task_t.c.status == Status.RUNNING.value),
        )
    )
    .where(feed_t.c.owner == bindparam("owner"))
    .order_by(task_t.c.created_at.desc(), task_t.c.id)
)
_MUTABLE = [c for c in _TASK_COLUMNS if c not in ("id", "created_at", "body_hash")]
_UPDATE_TASK = (
    update(task_t)
    .where(task_t.c.id == bindparam("b_id"))
    .values({c: bindparam(c) for c in _MUTABLE})
)


def row_to_state(row: Any) -> TaskState:
    m = row._mapping
    return TaskState(
        id=m["id"],
        owner=m["owner"],
        title=m["title"],
        kind=m["kind"],
        status=m["status"],
        process_instance_id=m["process_instance_id"],
        process_name=m["process_name"],
        record_entity=m["record_entity"],
        record_id=m["record_id"],
        record_title=m["record_title"],
        url=m["url"],
        postponed_until=as_utc(m["postponed_until"]),
        created_at=as_utc(m["created_at"]) or datetime.now(UTC),
        updated_at=as_utc(m["updated_at"]) or datetime.now(UTC),
        ended_at=as_utc(m["ended_at"]),
        body_hash=m["body_hash"],
    )


def decide(op: Op, current: TaskState | None, now: datetime) -> Outcome:
    """Route one operation to its rule. Raises ``ApiError`` when it is not allowed."""
    if op.kind == "create":
        assert isinstance(op.body, TaskCreate)
        return rules.create(op.body, current, now)
    if op.kind == "update":
        assert isinstance(op.body, TaskPatch)
        return rules.update(op.id, op.body, current, now)
    if op.kind == "complete":
        return rules.finish(op.id, Status.COMPLETED, current, now, op.actor)
    if op.kind == "cancel":
        return rules.finish(op.id, Status.CANCELED, current, now, op.actor)
    if op.kind == "postpone":
        assert isinstance(op.body, Postpone)
        return rules.postpone(op.id, op.body, current, now, op.actor)
    return rules.resume(op.id, current, now, op.actor, op.reason)


class Store:
    """SQL access for tasks and feeds. One instance per process; safe for concurrent use."""

    def __init__(self, engines: Engines, *, replay_limit: int = 1000) -> None:
        self.engines = engines
        self.replay_limit = replay_limit
        self.hooks: list[TxHook] = []
        # Statements built once: building an upsert's "excluded" alias alone costs more
        # CPU than executing it.
        upsert: Any = postgresql.insert if engines.dialect == "postgresql" else sqlite.insert
        ins = upsert(feed_t).values(
            owner=bindparam("owner"), seq=bindparam("n"), count=bindparam("delta")
        )
        self._feed_upsert = ins.on_conflict_do_update(
            index_elements=[feed_t.c.owner],
            set_={
                "seq": feed_t.c.seq + ins.excluded.seq,
                "count": feed_t.c.count + ins.excluded.count,
            },
        ).returning(feed_t.c.owner, feed_t.c.seq, feed_t.c.count, sort_by_parameter_order=True)
        select_tasks = (
            select(task_t)
            .where(task_t.c.id.in_(bindparam("ids", expanding=True)))
            .order_by(task_t.c.id)
        )
        self._select_tasks = select_tasks if engines.is_sqlite else select_tasks.with_for_update()

    # ------------------------------------------------------------------ writes

    async def apply(self, ops: Sequence[Op], now: datetime | None = None) -> Applied:
        """Apply ``ops`` in one transaction; each op succeeds or fails on its own.

        Raises ``Unavailable`` when the database cannot be reached or stays locked;
        nothing is then half-applied.
        """
        return await self.write(lambda conn, at: self.apply_in(conn, ops, at), now)

    async def write(self, fn: WriteFn[T], now: datetime | None = None) -> T:
        """Run ``fn(conn, now)`` in one write transaction, retried on a lost race
        (duplicate create, deadlock, serialization failure).

        Raises ``Unavailable`` when the database cannot be reached or stays locked.
        """
        for attempt in range(4):
            try:
                async with self.engines.writer.begin() as conn:
                    return await fn(conn, now or now_utc())
            except IntegrityError:
                # Two transactions created the same row at once: the loser retries and
                # now sees the winner's row (an idempotent repeat, or a 409).
                if attempt == 3:
                    raise
            except DBAPIError as exc:
                if attempt < 3 and _is_retryable(exc):
                    continue
                raise _unavailable(exc) from None
            except OSError as exc:
                raise _unavailable(exc) from None
        raise AssertionError("unreachable")

    async def apply_in(self, conn: AsyncConnection, ops: Sequence[Op], now: datetime) -> Applied:
        """The body of ``apply``, inside a transaction the caller holds."""
        ids = sorted({op.id for op in ops})
        rows = await conn.execute(self._select_tasks, {"ids": ids})
        existing = {row.id: row_to_state(row) for row in rows}
        working: dict[str, TaskState | None] = {i: existing.get(i) for i in ids}

        creates = [op.body for op in ops if isinstance(op.body, TaskCreate)]
        guard = await processes.load_guard(conn, creates) if creates else processes.NO_GUARD

        results: list[Outcome | ApiError] = []
        effects: list[tuple[Effect, TaskState]] = []
        changes: list[tuple[Op, Outcome]] = []
        for op in ops:
            try:
                if isinstance(op.body, TaskCreate) and working[op.id] is None:
                    guard.check_create(op.body)
                outcome = decide(op, working[op.id], now)
            except ApiError as exc:
                results.append(exc)
                continue
            results.append(outcome)
            if outcome.state is not None:
                working[op.id] = outcome.state
                effects.extend((e, outcome.state) for e in outcome.effects)
                changes.append((op, outcome))

        changed = {i: s for i, s in working.items() if s is not None and s is not existing.get(i)}
        if not changed:
            return Applied(results)

        envelopes = await self._bump_feeds(conn, effects, now)
        new_rows = [
            {c: getattr(s, c) for c in _TASK_COLUMNS}
            for i, s in changed.items()
            if i not in existing
        ]
        upd_rows = [
            {"b_id": s.id, **{c: getattr(s, c) for c in _MUTABLE}}
            for i, s in changed.items()
            if i in existing
        ]
        if new_rows:
            await conn.execute(insert(task_t), new_rows)
        if upd_rows:
            await conn.execute(_UPDATE_TASK, upd_rows)
        if envelopes:
            await conn.execute(
                insert(event_t),
                [
                    {
                        "owner": env.owner,
                        "seq": env.seq,
                        "type": eff.type.value,
                        "task_id": state.id,
                        "count": env.count,
                        "message": env.message,
                        "created_at": now,
                    }
                    for env, (eff, state) in zip(envelopes, effects, strict=True)
                ],
            )
        await processes.track(conn, changes, now)
        for hook in self.hooks:
            await hook(conn, changes, envelopes, now)
        return Applied(results, envelopes)

    async def resume_due(self, conn: AsyncConnection, now: datetime, limit: int = 200) -> Applied:
        """Bring back postponed tasks whose time has come (inside the caller's transaction).

        On PostgreSQL the due rows are claimed with ``FOR UPDATE SKIP LOCKED``, so with
        several instances each return fires exactly once."""
        query = (
            select(task_t.c.id)
            .where(
                and_(
                    task_t.c.status == Status.POSTPONED.value,
                    task_t.c.postponed_until <= now,
                )
            )
            .order_by(task_t.c.postponed_until, task_t.c.id)
            .limit(limit)
        )
        if not self.engines.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        ids = [str(r.id) for r in await conn.execute(query)]
        if not ids:
            return Applied([])
        return await self.apply_in(conn, [Op("resume", i, reason="resumed") for i in ids], now)

    async def prune_events(self, before: datetime) -> int:
        """Forget feed events older than ``before`` (clients that far behind get a
        snapshot instead of a replay)."""
        async with self.engines.writer.begin() as conn:
            result = await conn.execute(event_t.delete().where(event_t.c.created_at < before))
        return int(result.rowcount or 0)

    async def _bump_feeds(
        self, conn: AsyncConnection, effects: list[tuple[Effect, TaskState]], now: datetime
    ) -> list[Envelope]:
        per_owner: dict[str, list[int]] = {}
        for eff, _ in effects:
            n_delta = per_owner.setdefault(eff.owner, [0, 0])
            n_delta[0] += 1
            n_delta[1] += eff.delta
        if not per_owner:
            return []
        # One statement for every owner, in sorted order (so concurrent transactions lock
        # feed rows in the same order and never deadlock); it returns each owner's new
        # seq and count, from which each event's own seq and count are counted back.
        params = [
            {"owner": owner, "n": per_owner[owner][0], "delta": per_owner[owner][1]}
            for owner in sorted(per_owner)
        ]
        cursor: dict[str, list[int]] = {}
        for owner, seq, count in await conn.execute(self._feed_upsert, params):
            n, delta = per_owner[owner]
            cursor[owner] = [int(seq) - n, int(count) - delta]
        envelopes: list[Envelope] = []
        for eff, state in effects:
            c = cursor[eff.owner]
            c[0] += 1
            c[1] += eff.delta
            message: EventMessage = {
                "type": eff.type.value,
                "seq": c[0],
                "count": c[1],
                "task": state.to_json(),
                "reason": eff.reason,
            }
            envelopes.append(Envelope(eff.owner, c[0], c[1], dumps(message)))
        return envelopes

    # ------------------------------------------------------------------ reads

    async def get_task(self, task_id: str) -> TaskState | None:
        async with self._read() as conn:
            row = (await conn.execute(select(task_t).where(task_t.c.id == task_id))).first()
        return row_to_state(row) if row else None

    async def counter(self, owner: str) -> tuple[int, int]:
        """``(count, seq)`` of an owner's feed; ``(0, 0)`` for an owner never seen."""
        async with self._read() as conn:
            seq, count = await self._feed(conn, owner)
        return count, seq

    async def _feed(self, conn: AsyncConnection, owner: str) -> tuple[int, int]:
        """``(seq, count)`` of an owner's feed row, ``(0, 0)`` when there is none."""
        row = (
            await conn.execute(select(feed_t.c.seq, feed_t.c.count).where(feed_t.c.owner == owner))
        ).first()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def snapshot(self, owner: str) -> Snapshot:
        """The owner's running tasks and the seq/count they correspond to, consistently."""
        async with self._read() as conn:
            return await self._snapshot(conn, owner)

    async def _snapshot(self, conn: AsyncConnection, owner: str) -> Snapshot:
        # One statement, so the tasks and the seq/count always agree without a
        # transaction: the feed row, joined to its owner's running tasks.
        rows = (await conn.execute(_SNAPSHOT, {"owner": owner})).all()
        if not rows:
            return Snapshot(0, 0, [])
        seq, count = int(rows[0].feed_seq), int(rows[0].feed_count)
        tasks = [row_to_state(r).to_json() for r in rows if r.id is not None]
        return Snapshot(seq, count, tasks)

    async def resume(self, owner: str, since: int | None) -> Snapshot | Replay:
        """What a (re)connecting client needs: the events after ``since`` when they are
        all still kept and not too many, else a snapshot (also when ``since`` is ahead
        of the server, e.g. after a restore)."""
        async with self._read() as conn:
            if since is not None:
                seq, count = await self._feed(conn, owner)
                if since == seq:
                    return Replay(seq, count, [])
                if since < seq and seq - since <= self.replay_limit:
                    messages = await self._events(conn, owner, since, seq)
                    if len(messages) == seq - since:
                        return Replay(seq, count, [m for _, m in messages])
            return await self._snapshot(conn, owner)

    async def events_after(self, owner: str, after: int, limit: int = 500) -> list[tuple[int, str]]:
        """Kept events of ``owner`` with seq > ``after``, in order (at most ``limit``)."""
        async with self._read() as conn:
            return await self._events(conn, owner, after, after + limit)

    async def _events(
        self, conn: AsyncConnection, owner: str, after: int, upto: int
    ) -> list[tuple[int, str]]:
        rows = await conn.execute(
            select(event_t.c.seq, event_t.c.message)
            .where(and_(event_t.c.owner == owner, event_t.c.seq > after, event_t.c.seq <= upto))
            .order_by(event_t.c.seq)
        )
        return [(int(r.seq), str(r.message)) for r in rows]

    async def latest_seqs(self, owners: Iterable[str]) -> dict[str, int]:
        owners = list(owners)
        out: dict[str, int] = {}
        async with self._read() as conn:
            for i in range(0, len(owners), 500):
                chunk = owners[i : i + 500]
                rows = await conn.execute(
                    select(feed_t.c.owner, feed_t.c.seq).where(feed_t.c.owner.in_(chunk))
                )
                out.update({r.owner: int(r.seq) for r in rows})
        return out

    async def list_tasks(
        self,
        owner: str,
        statuses: Sequence[str],
        *,
        limit: int = 50,
        cursor: tuple[datetime, str] | None = None,
        record: tuple[str, str] | None = None,
    ) -> list[TaskState]:
        """An owner's tasks, newest first, with keyset pagination on (updated_at, id)."""
        cond = [task_t.c.owner == owner]
        if statuses:
            cond.append(task_t.c.status.in_(list(statuses)))
        if record is not None:
            cond += [task_t.c.record_entity == record[0], task_t.c.record_id == record[1]]
        if cursor is not None:
            cond.append(paging.after(cursor, task_t.c.updated_at, task_t.c.id))
        query = (
            select(task_t)
            .where(and_(*cond))
            .order_by(*paging.newest_first(task_t.c.updated_at, task_t.c.id))
            .limit(limit)
        )
        async with self._read() as conn:
            return [row_to_state(r) for r in await conn.execute(query)]

    async def status_counts(self, owner: str) -> dict[str, int]:
        """How many of the owner's tasks are in each status (every status listed)."""
        query = (
            select(task_t.c.status, func.count())
            .where(task_t.c.owner == owner)
            .group_by(task_t.c.status)
        )
        counts = {s.value: 0 for s in Status}
        async with self._read() as conn:
            for status, n in await conn.execute(query):
                counts[str(status)] = int(n)
        return counts

    async def running_count(self, owner: str) -> int:
        """Ground truth for checks: count(*) of running tasks (not the feed counter)."""
        async with self._read() as conn:
            value = await conn.scalar(
                select(func.count())
                .select_from(task_t)
                .where(and_(task_t.c.owner == owner, task_t.c.status == Status.RUNNING.value))
            )
        return int(value or 0)

    async def ping(self) -> None:
        """Raises ``Unavailable`` unless the database answers."""
        try:
            async with self.engines.reader.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (DBAPIError, OSError) as exc:
            raise _unavailable(exc) from None

    # ------------------------------------------------------------------ helpers

    def _read(self) -> Any:
        """A connection for reads, in autocommit: every read is one statement, or (the
        replay) reads an append-only log up to a seq read before it, so none needs a
        transaction, and SQLite is spared a BEGIN and a ROLLBACK per read."""
        return self.engines.reader.connect()


def _is_retryable(exc: DBAPIError) -> bool:
    msg = str(exc.orig).lower()
    return "deadlock" in msg or "could not serialize" in msg


def _unavailable(exc: BaseException) -> Unavailable:
    log.warning("database unavailable: %s", type(exc).__name__)
    if "locked" in str(exc).lower():
        return Unavailable("the database is busy; retry shortly", code="database_busy")
    return Unavailable("the database is unreachable; retry shortly", code="database_unavailable")
