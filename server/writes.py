"""The write path: every operation, in SQL (SQLite or PostgreSQL), one transaction each call.

Task operations (``apply``) are one transaction for any number of them:

1. read (and lock, on PostgreSQL) every task the operations name, in id order;
2. decide each operation with the pure rules of ``transitions``;
3. bump each touched owner's feed row once (``seq += n, count += delta, postponed +=
   moved``, owners in sorted order, so concurrent transactions never deadlock), which
   also locks it;
4. write the tasks and one ``feed_event`` per effect, holding the exact message;
5. keep process instances in step (``processes.track``) and let the hooks queue their
   deliveries, in the same transaction.

So a batch of N changes costs a handful of statements, not N transactions. Process and
clock operations (``run``) take the same path for the tasks they change (ending an
instance cancels its open steps). Nothing here publishes: ``Service`` does, after commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from server import audiences, direct, processes, seen
from server.audiences import RoleJSON, Substitution
from server.changes import Applied, Envelope, TxHook
from server.clock import now_utc
from server.counts import counts_json
from server.db import Engines, refused_statement, unavailable
from server.errors import ApiError
from server.feeds import split_key
from server.models import change_t, event_t, feed_t, revocation_t, task_t
from server.ops import (
    AddSubstitution,
    CancelTask,
    ClaimTask,
    CompleteTask,
    CreateTask,
    EndInstance,
    EndSubstitution,
    FlagOverdue,
    InstanceStatus,
    MarkOverdue,
    MarkSeen,
    MoveSubstitutions,
    PostponeTask,
    PruneEvents,
    ResumeDue,
    ResumeTask,
    RevokeUser,
    SetDisabled,
    SetExpectMore,
    SetMembers,
    StartInstance,
    TaskOp,
    UpdateTask,
)
from server.processes import Ended, Instance, Started
from server.sqlite_driver import on_thread
from server.transitions import Effect, Outcome, TaskState, decide
from server.wire import EventMessage, Status, dumps, iso

log = logging.getLogger("taskbell.writes")

T = TypeVar("T")
WriteFn = Callable[[AsyncConnection, datetime], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class Resumed:
    """What one ``ResumeDue`` did: due rows found (at most its limit), and brought back."""

    found: int
    fired: int


@dataclass(frozen=True, slots=True)
class RoleSet:
    role: RoleJSON
    created: bool


@dataclass(frozen=True, slots=True)
class SubstitutionAdded:
    substitution: Substitution
    created: bool


ClockOp = ResumeDue | MarkOverdue | MoveSubstitutions | PruneEvents
AudienceRun = SetMembers | AddSubstitution | EndSubstitution
RunOp = (
    StartInstance
    | SetExpectMore
    | EndInstance
    | SetDisabled
    | RevokeUser
    | MarkSeen
    | AudienceRun
    | ClockOp
)
RunResult = (
    Started
    | Instance
    | Ended
    | Resumed
    | RoleSet
    | SubstitutionAdded
    | Substitution
    | datetime
    | seen.Marked
    | None
    | int
)
TaskKey = tuple[str, str]  # (tenant, task id)

_TASK_COLUMNS = [c.name for c in task_t.columns]
_MUTABLE = [c for c in _TASK_COLUMNS if c not in ("tenant", "id", "created_at", "body_hash")]
# Built once, as the statements above and below (processes.py says why).
_INSERT_TASKS = insert(task_t)
_INSERT_EVENTS = insert(event_t)
_INSERT_CHANGES = insert(change_t)
_UPDATE_TASK = (
    update(task_t)
    .where(and_(task_t.c.tenant == bindparam("b_tenant"), task_t.c.id == bindparam("b_id")))
    .values({c: bindparam(c) for c in _MUTABLE})
)
# A big batch gives the loop back every this many ops: on SQLite the writer's statements
# run on the loop's thread (server/sqlite_driver.py), so without it a batch of 500 would
# hold every socket up for its whole length (~40 ms), not just for its longest statement.
_YIELD_EVERY = 100
_ATTEMPTS = 4  # a transaction lost to a race (duplicate create, deadlock) is tried again


class Writes:
    """The only code that changes tasks, feeds and instances. One per process; safe for
    concurrent use. ``hooks`` run inside every transaction that changed tasks."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines
        self.hooks: list[TxHook] = []
        # Statements built once: building an upsert's "excluded" alias alone costs more
        # CPU than executing it.
        upsert: Any = postgresql.insert if engines.dialect == "postgresql" else sqlite.insert
        ins = upsert(feed_t).values(
            tenant=bindparam("tenant"),
            feed=bindparam("feed"),
            seq=bindparam("n"),
            count=bindparam("delta"),
            postponed=bindparam("moved"),
        )
        self._feed_upsert = ins.on_conflict_do_update(
            index_elements=[feed_t.c.tenant, feed_t.c.feed],
            set_={
                "seq": feed_t.c.seq + ins.excluded.seq,
                "count": feed_t.c.count + ins.excluded.count,
                "postponed": feed_t.c.postponed + ins.excluded.postponed,
            },
        ).returning(
            feed_t.c.tenant,
            feed_t.c.feed,
            feed_t.c.seq,
            feed_t.c.count,
            feed_t.c.postponed,
            sort_by_parameter_order=True,
        )
        select_tasks = (
            select(task_t)
            .where(
                and_(
                    task_t.c.tenant == bindparam("tenant"),
                    task_t.c.id.in_(bindparam("ids", expanding=True)),
                )
            )
            .order_by(task_t.c.id)
        )
        self._select_tasks = select_tasks if engines.is_sqlite else select_tasks.with_for_update()
        revoke = upsert(revocation_t).values(
            tenant=bindparam("tenant"),
            user_id=bindparam("user_id"),
            revoked_at=bindparam("revoked_at"),
        )
        self._revoke = revoke.on_conflict_do_update(
            index_elements=[revocation_t.c.tenant, revocation_t.c.user_id],
            set_={"revoked_at": revoke.excluded.revoked_at},
        )

    # ---------------------------------------------------------------- entry points

    async def apply(self, ops: Sequence[TaskOp], now: datetime | None = None) -> Applied:
        """Apply task ``ops`` in one transaction; each op succeeds or fails on its own.

        Raises ``Unavailable`` when the database cannot be reached or stays locked;
        nothing is then half-applied."""
        return await self._transaction(lambda conn, at: self._apply_in(conn, ops, at), now)

    async def run(self, op: RunOp, now: datetime | None = None) -> tuple[RunResult, Applied]:
        """Run one process or clock operation in one transaction: its result, and what
        the tasks it changed did. Raises its ``ApiError`` when refused, ``Unavailable``
        as ``apply`` does."""
        return await self._transaction(lambda conn, at: self._run_in(conn, op, at), now)

    # ---------------------------------------------------------------- transactions

    async def _transaction(self, fn: WriteFn[T], now: datetime | None) -> T:
        for attempt in range(_ATTEMPTS):
            try:
                async with self.engines.writer.begin() as conn:
                    return await fn(conn, now or now_utc())
            except IntegrityError:
                # Two transactions created the same row at once: the loser retries and
                # now sees the winner's row (an idempotent repeat, or a 409).
                if attempt == _ATTEMPTS - 1:
                    raise
            except DBAPIError as exc:
                if attempt < _ATTEMPTS - 1 and _is_retryable(exc):
                    continue
                if refused_statement(exc):
                    raise  # this write's own fault: the service fails it alone
                raise unavailable(exc) from None
            except OSError as exc:
                raise unavailable(exc) from None
        raise AssertionError("unreachable")

    async def _run_in(
        self, conn: AsyncConnection, op: RunOp, now: datetime
    ) -> tuple[RunResult, Applied]:
        nothing = Applied([])
        match op:
            case StartInstance(id=iid, name=name, expect_more=more, tenant=tenant):
                return await processes.start(conn, now, tenant, iid, name, more), nothing
            case SetExpectMore(id=iid, expect_more=more, tenant=tenant):
                return await processes.set_expect_more(conn, now, tenant, iid, more), nothing
            case SetDisabled(name=name, disabled=disabled, tenant=tenant):
                await processes.set_disabled(conn, now, tenant, name, disabled)
                return None, nothing
            case EndInstance(id=iid, status=status, tenant=tenant):
                inst = await processes.lock_to_end(conn, tenant, iid, status)
                if inst.status is not InstanceStatus.RUNNING:
                    return Ended(inst, 0), nothing  # ended this way already
                open_ids = await processes.open_step_ids(conn, tenant, iid)
                if open_ids:
                    cancels: list[TaskOp] = [CancelTask(i, tenant=tenant) for i in open_ids]
                    applied = await self._apply_in(conn, cancels, now)
                else:
                    applied = nothing
                # Canceling the last steps may have completed it already: the caller's
                # word wins.
                ended = await processes.end(conn, tenant, inst, status, now)
                return Ended(ended, len(open_ids)), applied
            case ResumeDue(limit=limit):
                due = await self._due(conn, now, limit)
                if not due:
                    return Resumed(0, 0), nothing
                resumes: list[TaskOp] = [ResumeTask(i, tenant=t, by_clock=True) for t, i in due]
                applied = await self._apply_in(conn, resumes, now)
                fired = sum(1 for r in applied.results if not isinstance(r, ApiError))
                return Resumed(len(due), fired), applied
            case RevokeUser(user=user, tenant=tenant):
                await conn.execute(
                    self._revoke, {"tenant": tenant, "user_id": user, "revoked_at": now}
                )
                return now, nothing
            case MarkSeen(user=user, feeds=wanted, tenant=tenant):
                marked, envelope = await seen.mark(conn, tenant, user, dict(wanted), now)
                return marked, Applied([], [envelope] if envelope else [])
            case SetMembers(role=role_id, members=members, tenant=tenant):
                role, created = await audiences.set_members(conn, tenant, role_id, members, now)
                return RoleSet(role, created), nothing
            case AddSubstitution(
                id=sid, user=user, substitute=sub, starts_at=starts, ends_at=ends, tenant=tenant
            ):
                added, created = await audiences.add_substitution(
                    conn, tenant, sid, user, sub, starts, ends, now
                )
                return SubstitutionAdded(added, created), nothing
            case EndSubstitution(id=sid, tenant=tenant):
                return await audiences.end_substitution(conn, tenant, sid, now), nothing
            case MarkOverdue(limit=limit):
                late = await self._overdue(conn, now, limit)
                if not late:
                    return Resumed(0, 0), nothing
                flags: list[TaskOp] = [FlagOverdue(i, tenant=t) for t, i in late]
                applied = await self._apply_in(conn, flags, now)
                fired = sum(
                    1
                    for r in applied.results
                    if not isinstance(r, ApiError) and r.state is not None
                )
                return Resumed(len(late), fired), applied
            case MoveSubstitutions(limit=limit):
                return await audiences.move_substitutions(conn, now, limit), nothing
            case PruneEvents(before=before):
                # A long delete: on SQLite off the loop's thread (server/sqlite_driver.py).
                with on_thread():
                    result = await conn.execute(
                        event_t.delete().where(event_t.c.created_at < before)
                    )
                    await audiences.prune(conn, now)
                return int(result.rowcount or 0), nothing

    async def _overdue(self, conn: AsyncConnection, now: datetime, limit: int) -> list[TaskKey]:
        """Open tasks whose due time has passed and that are not flagged yet; claimed
        like ``_due``, so each is flagged exactly once across instances."""
        query = (
            select(task_t.c.tenant, task_t.c.id)
            .where(
                and_(
                    task_t.c.overdue.is_(False),
                    task_t.c.due_at <= now,
                    task_t.c.status.in_([Status.RUNNING.value, Status.POSTPONED.value]),
                )
            )
            .order_by(task_t.c.due_at, task_t.c.tenant, task_t.c.id)
            .limit(limit)
        )
        if not self.engines.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        return [(str(r.tenant), str(r.id)) for r in await conn.execute(query)]

    async def _due(self, conn: AsyncConnection, now: datetime, limit: int) -> list[TaskKey]:
        """Postponed tasks whose time has come. On PostgreSQL the rows are claimed with
        ``FOR UPDATE SKIP LOCKED``, so with several instances each fires exactly once."""
        query = (
            select(task_t.c.tenant, task_t.c.id)
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
        return [(str(r.tenant), str(r.id)) for r in await conn.execute(query)]

    # ---------------------------------------------------------------- task operations

    async def _apply_in(
        self, conn: AsyncConnection, ops: Sequence[TaskOp], now: datetime
    ) -> Applied:
        existing: dict[TaskKey, TaskState] = {}
        per_tenant: dict[str, set[str]] = {}
        for op in ops:
            per_tenant.setdefault(op.tenant, set()).add(op.id)
        for tenant in sorted(per_tenant):
            rows = await direct.execute(
                conn, self._select_tasks, {"tenant": tenant, "ids": sorted(per_tenant[tenant])}
            )
            for row in rows:
                state = TaskState.from_row(row._mapping)
                existing[(state.tenant, state.id)] = state
        working: dict[TaskKey, TaskState | None] = {
            (t, i): existing.get((t, i)) for t, ids in per_tenant.items() for i in ids
        }
        # Who follows what, for the people who act or claim (read in this transaction,
        # so a membership removed before it is already in force).
        people = {(op.tenant, op.actor) for op in ops if op.actor is not None}
        people |= {(op.tenant, op.user) for op in ops if isinstance(op, ClaimTask)}
        feeds: dict[tuple[str, str], frozenset[str]] = {}
        for tenant in sorted({t for t, _ in people}):
            found = await audiences.feeds_of_many(
                conn, tenant, [u for t, u in people if t == tenant]
            )
            feeds.update({(tenant, u): frozenset(f) for u, f in found.items()})
        guards: dict[str, processes.Guard] = {}
        for tenant in sorted(per_tenant):
            creates = [op.body for op in ops if isinstance(op, CreateTask) and op.tenant == tenant]
            if creates:
                guards[tenant] = await processes.load_guard(conn, tenant, creates)

        results: list[Outcome | ApiError] = []
        effects: list[tuple[Effect, TaskState]] = []
        changes: list[tuple[TaskOp, Outcome]] = []
        for n, op in enumerate(ops, 1):
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # (let the loop serve the sockets meanwhile)
            key = (op.tenant, op.id)
            try:
                if isinstance(op, CreateTask) and working[key] is None:
                    guards.get(op.tenant, processes.NO_GUARD).check_create(op.body)
                audience = feeds[(op.tenant, op.actor)] if op.actor is not None else None
                claimer = feeds[(op.tenant, op.user)] if isinstance(op, ClaimTask) else frozenset()
                outcome = decide(op, working[key], now, audience, claimer)
            except ApiError as exc:
                results.append(exc)
                continue
            results.append(outcome)
            if outcome.state is not None:
                working[key] = outcome.state
                effects.extend((e, outcome.state) for e in outcome.effects)
                changes.append((op, outcome))

        changed = {k: s for k, s in working.items() if s is not None and s is not existing.get(k)}
        if not changed:
            return Applied(results)

        envelopes = await self._bump_feeds(conn, effects)
        if len(effects) >= _YIELD_EVERY:
            await asyncio.sleep(0)
        new_rows = [
            {c: getattr(s, c) for c in _TASK_COLUMNS}
            for k, s in changed.items()
            if k not in existing
        ]
        upd_rows = [
            {"b_tenant": s.tenant, "b_id": s.id, **{c: getattr(s, c) for c in _MUTABLE}}
            for k, s in changed.items()
            if k in existing
        ]
        if new_rows:
            await direct.execute(conn, _INSERT_TASKS, new_rows)
        if upd_rows:
            await direct.execute(conn, _UPDATE_TASK, upd_rows)
        if envelopes:
            event_rows: list[dict[str, Any]] = []
            for env, (eff, state) in zip(envelopes, effects, strict=True):
                tenant, feed = split_key(env.key)
                event_rows.append(
                    {
                        "tenant": tenant,
                        "feed": feed,
                        "seq": env.seq,
                        "type": eff.type.value,
                        "task_id": state.id,
                        "count": env.count,
                        "postponed": env.postponed,
                        "message": env.message,
                        "created_at": now,
                    }
                )
            await direct.execute(conn, _INSERT_EVENTS, event_rows)
        await direct.execute(conn, _INSERT_CHANGES, [_history_row(op, o, now) for op, o in changes])
        await processes.track(conn, changes, now)
        queued = False
        for hook in self.hooks:
            queued = await hook(conn, changes, envelopes, now) or queued
        return Applied(results, envelopes, queued)

    async def _bump_feeds(
        self, conn: AsyncConnection, effects: list[tuple[Effect, TaskState]]
    ) -> list[Envelope]:
        per_feed: dict[str, list[int]] = {}  # key → [events, running moved, postponed moved]
        for eff, _ in effects:
            sums = per_feed.setdefault(eff.key, [0, 0, 0])
            sums[0] += 1
            sums[1] += eff.delta
            sums[2] += eff.postponed
        if not per_feed:
            return []
        # One statement for every feed, in sorted order (so concurrent transactions lock
        # feed rows in the same order and never deadlock); it returns each feed's new
        # seq and counts, from which each event's own seq and counts are counted back.
        params = []
        for key in sorted(per_feed):
            tenant, feed = split_key(key)
            n, delta, moved = per_feed[key]
            params.append({"tenant": tenant, "feed": feed, "n": n, "delta": delta, "moved": moved})
        cursor: dict[str, list[int]] = {}
        for tenant, feed, seq, count, postponed in await direct.execute(
            conn, self._feed_upsert, params
        ):
            key = f"{tenant}/{feed}"
            n, delta, moved = per_feed[key]
            cursor[key] = [int(seq) - n, int(count) - delta, int(postponed) - moved]
        envelopes: list[Envelope] = []
        for eff, state in effects:
            c = cursor[eff.key]
            c[0] += 1
            c[1] += eff.delta
            c[2] += eff.postponed
            message: EventMessage = {
                "type": eff.type.value,
                "feed": split_key(eff.key)[1],
                "seq": c[0],
                "count": c[1],
                "counts": counts_json(c[1], c[2]),
                "task": state.to_json(),
                "reason": eff.reason,
            }
            envelopes.append(Envelope(eff.key, c[0], c[1], dumps(message), c[2]))
        return envelopes


def acting_as(op: TaskOp, before: TaskState | None) -> str:
    """In which capacity ``op``'s actor made the change: ``producer`` or ``clock`` (no
    person), ``claimer``, or, by the feed the task was in, ``owner``, ``member`` (of its
    role's queue) or ``substitute`` (standing in for its owner)."""
    if op.actor is None:
        clock = isinstance(op, FlagOverdue) or (isinstance(op, ResumeTask) and op.by_clock)
        return "clock" if clock else "producer"
    if isinstance(op, ClaimTask):
        return "claimer"
    if before is None or before.feed == f"user:{op.actor}":
        return "owner"
    return "member" if before.owner is None else "substitute"


def _history_row(op: TaskOp, outcome: Outcome, now: datetime) -> dict[str, Any]:
    state = outcome.current
    before = outcome.before
    detail: dict[str, Any] = {}
    if before is not None and isinstance(op, UpdateTask):
        detail["fields"] = sorted(
            name
            for name in _MUTABLE
            if name not in ("updated_at", "acted_by")
            and getattr(before, name) != getattr(state, name)
        )
    if isinstance(op, CompleteTask) and (state.outcome or state.comment):
        detail.update(outcome=state.outcome, comment=state.comment)
    if isinstance(op, PostponeTask):
        detail["until"] = iso(op.until)
    return {
        "tenant": state.tenant,
        "task_id": state.id,
        "at": now,
        "op": op.kind,
        "actor": op.actor,
        "acting_as": acting_as(op, before),
        "status": state.status,
        "owner": state.owner,
        "role": state.role,
        "detail": dumps(detail) if detail else None,
    }


def _is_retryable(exc: DBAPIError) -> bool:
    msg = str(exc.orig).lower()
    return "deadlock" in msg or "could not serialize" in msg
