"""The feed rules as a property: any sequence of operations on the real write path
keeps every feed's seqs contiguous and its count exact.

A Hypothesis state machine drives, in two tenants that use the same task ids, user ids
and role ids: creates (for a person or a role queue, some postponed, some in a process
instance), idempotent repeats, renames, reassignments (to a person or to a queue),
postponements, resumptions, completions and cancellations (by the producer, the owner,
a member of the task's queue or someone else), claims and unclaims (by members,
outsiders and producers), role membership changes, batches of those in one
transaction, process cancels, and the clock moving on so that postponed tasks come back
by the timer. A small model of the contract's state machine predicts each answer.
After every step:

- the database's audit (``tests/faults/audit.py``) finds nothing: seqs 1..n with no
  gap, each event's count equal to the replayed running set, the replay ending with
  exactly the running tasks, ``feed.count`` equal to their number, each event's
  ``counts`` equal to its row's, ``feed.postponed`` equal to the feed's postponed tasks;
- every feed's postponed count (``counts.postponed`` as ``/me/counter`` and every view
  give it) is the number of the model's postponed tasks in that feed;
- every task's status and owner are what the model says;
- resuming from any ``since`` gives exactly the missing events (contiguous, ending at
  the feed's seq and count), or a snapshot of the running tasks when ``since`` is
  ahead.

It runs on SQLite and on PostgreSQL, one database per run; each example works under
its own owner, role and id prefix.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from server.db import make_engines
from server.errors import ApiError
from server.feedlog import Replay, Snapshot, SqlFeedLog
from server.feeds import key_of
from server.migrate import upgrade
from server.ops import (
    CancelTask,
    ClaimTask,
    CompleteTask,
    CreateTask,
    EndInstance,
    InstanceStatus,
    PostponeTask,
    ResumeDue,
    ResumeTask,
    SetMembers,
    TaskOp,
    UnclaimTask,
    UpdateTask,
)
from server.reads import Reads
from server.transitions import Outcome
from server.wire import ProcessRef, TaskCreate, TaskPatch
from server.writes import Writes
from tests.faults.audit import audit, name_of
from tests.support.services import PostgresServer

T = TypeVar("T")

OWNERS = ("ann", "ben", "cat")
ROLES = ("desk", "ops")
TENANTS = ("default", "acme")
INSTANCES = ("p1", "p2", "p3")
FINAL = ("completed", "canceled")
_runs = itertools.count()
SEEN: Counter[str] = Counter()  # what the runs did, printed at the end (pytest -s)


@dataclass(frozen=True)
class Model:
    """What the contract says one task is."""

    owner: str | None
    role: str | None
    status: str
    instance: str | None
    until: datetime | None
    body: TaskCreate


@dataclass
class Expect:
    """The predicted answer to one operation, and the task after it."""

    code: int
    error: str | None
    after: Model | None


class Runner:
    """The write path and the reads on their own event loop, shared by every example
    of one run."""

    def __init__(self, url: str) -> None:
        upgrade(url)
        self.loop = asyncio.new_event_loop()
        self.engines = make_engines(url)
        self.writes = Writes(self.engines)
        self.reads = Reads(self.engines)
        self.log = SqlFeedLog(self.engines)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.engines.dispose())
        self.loop.close()


def feed_of(m: Model) -> str:
    return f"user:{m.owner}" if m.owner is not None else f"role:{m.role}"


Audience = frozenset[str]


def decide(op: TaskOp, m: Model | None, now: datetime, audience: Any) -> Expect:
    """The contract's rules for one operation (the contract's "status" section and its
    roles section). ``audience(person)`` is the feeds that person follows."""
    if isinstance(op, CreateTask):
        if m is not None:
            return Expect(200, None, m) if m.body == op.body else Expect(409, "task_id_conflict", m)
        until = op.body.postponed_until
        status = "postponed" if until is not None and until > now else "running"
        instance = op.body.process.instance_id if op.body.process else None
        return Expect(
            201, None, Model(op.body.owner, op.body.role, status, instance, until, op.body)
        )
    if isinstance(op, ClaimTask):
        return _claim(op, m, audience)
    if m is None or (op.actor is not None and feed_of(m) not in audience(op.actor)):
        return Expect(404, "task_not_found", m)
    match op:
        case UpdateTask(patch=patch):
            if m.status in FINAL:
                return Expect(409, "illegal_transition", m)
            fields = patch.model_fields_set
            owner = patch.owner if "owner" in fields else m.owner
            role = patch.role if "role" in fields else m.role
            return Expect(200, None, replace(m, owner=owner, role=role))
        case CompleteTask() | CancelTask():
            final = "completed" if isinstance(op, CompleteTask) else "canceled"
            if m.status == final:
                return Expect(200, None, m)
            if m.status in FINAL:
                return Expect(409, "illegal_transition", m)
            return Expect(200, None, replace(m, status=final, until=None))
        case PostponeTask(until=until):
            if m.status in FINAL:
                return Expect(409, "illegal_transition", m)
            if until <= now:
                return Expect(422, "bad_time", m)
            return Expect(200, None, replace(m, status="postponed", until=until))
        case UnclaimTask():
            if m.role is None:
                return Expect(409, "not_a_queue_task", m)
            if m.owner is None:
                return Expect(200, None, m)
            if m.status in FINAL:
                return Expect(409, "illegal_transition", m)
            return Expect(200, None, replace(m, owner=None))
    # resume
    if m.status in FINAL:
        return Expect(409, "illegal_transition", m)
    return Expect(200, None, replace(m, status="running", until=None))


def _claim(op: ClaimTask, m: Model | None, audience: Any) -> Expect:
    mine = audience(op.actor) if op.actor is not None else None
    if m is None or (mine is not None and feed_of(m) not in mine and f"role:{m.role}" not in mine):
        return Expect(404, "task_not_found", m)
    if m.role is None:
        return Expect(409, "not_a_queue_task", m)
    if m.owner == op.user:
        return Expect(200, None, m)
    if f"role:{m.role}" not in audience(op.user):
        return (
            Expect(404, "task_not_found", m) if mine is not None else Expect(422, "not_a_member", m)
        )
    if m.status in FINAL:
        return Expect(409, "illegal_transition", m)
    if m.owner is not None:
        return Expect(409, "already_claimed", m)
    return Expect(200, None, replace(m, owner=op.user))


class FeedMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")

    def __init__(self, runner: Runner) -> None:
        super().__init__()
        SEEN["examples"] += 1
        self.r = runner
        self.prefix = f"r{next(_runs)}-"
        self.clock = datetime(2030, 1, 1, tzinfo=UTC)
        self.model: dict[tuple[str, str], Model] = {}  # (tenant, task id) -> task
        self.members: dict[tuple[str, str], frozenset[str]] = {}  # (tenant, role) -> people
        self.canceled_instances: set[tuple[str, str]] = set()
        self.serial = 0

    # ------------------------------------------------------------------ helpers

    def at(self, minutes: int) -> datetime:
        return self.clock + timedelta(minutes=minutes)

    def who(self, owner: str) -> str:
        return self.prefix + owner

    def audience(self, tenant: str) -> Any:
        def of(person: str) -> Audience:
            roles = [
                r for (t, r), people in self.members.items() if t == tenant and person in people
            ]
            return frozenset({f"user:{person}", *(f"role:{r}" for r in roles)})

        return of

    def feeds(self) -> list[tuple[str, str]]:
        """Every (tenant, feed) this example can touch."""
        return [
            (t, f)
            for t in TENANTS
            for f in [
                *(f"user:{self.who(o)}" for o in OWNERS),
                *(f"role:{self.who(r)}" for r in ROLES),
            ]
        ]

    def ended(
        self,
        tenant: str,
        instance: str,
        model: Mapping[tuple[str, str], Model] | None = None,
    ) -> bool:
        """Canceled, or ended by itself when its last open step ended."""
        if (tenant, instance) in self.canceled_instances:
            return True
        steps = [
            m
            for (t, _), m in (model or self.model).items()
            if t == tenant and m.instance == instance
        ]
        return bool(steps) and all(m.status in FINAL for m in steps)

    def ended_canceled(self, tenant: str, instance: str) -> bool:
        """Ended as canceled: by the producer, or by itself with every step canceled
        (its steps are final, so what they are now is what they were at its end)."""
        if (tenant, instance) in self.canceled_instances:
            return True
        steps = [m for (t, _), m in self.model.items() if t == tenant and m.instance == instance]
        return bool(steps) and all(m.status == "canceled" for m in steps)

    def apply(self, ops: list[TaskOp]) -> None:
        """Apply ``ops`` in one transaction; each answer must be the predicted one."""
        working = dict(self.model)
        expected: list[Expect] = []
        for op in ops:
            m = working.get((op.tenant, op.id))
            ended = (
                isinstance(op, CreateTask)
                and m is None
                and op.body.process is not None
                and self.ended(op.tenant, op.body.process.instance_id, working)
            )
            if ended:
                expected.append(Expect(409, "process_ended", None))
                continue
            e = decide(op, m, self.clock, self.audience(op.tenant))
            expected.append(e)
            if e.after is not None and e.code < 300:
                working[(op.tenant, op.id)] = e.after
        applied = self.r.run(self.r.writes.apply(ops, now=self.clock))
        SEEN["transactions"] += 1
        SEEN["events"] += len(applied.envelopes)
        for op, e, got in zip(ops, expected, applied.results, strict=True):
            SEEN[f"{op.kind} {e.code}"] += 1
            assert _code(got) == (e.code, e.error if e.code >= 300 else None), (op, e, got)
        self.model = working

    def task_op(
        self, kind: str, ref: tuple[str, str], actor: str | None, arg: Any = None
    ) -> TaskOp:
        tenant, tid = ref
        if kind == "rename":
            return UpdateTask(tid, TaskPatch(title=f"Renamed {self.serial}"), tenant)
        if kind == "reassign":
            return UpdateTask(tid, TaskPatch(owner=self.who(arg)), tenant)
        if kind == "to_queue":
            return UpdateTask(tid, TaskPatch(owner=None, role=self.who(arg)), tenant)
        if kind == "postpone":
            return PostponeTask(tid, self.clock + timedelta(minutes=arg), actor, tenant)
        if kind == "claim":
            return ClaimTask(tid, actor or self.who(arg), actor, tenant)
        if kind == "unclaim":
            return UnclaimTask(tid, actor, tenant)
        finishers: dict[str, type[CompleteTask | CancelTask | ResumeTask]] = {
            "complete": CompleteTask,
            "cancel": CancelTask,
            "resume": ResumeTask,
        }
        return finishers[kind](tid, actor, tenant)

    def actor(self, ref: tuple[str, str], who: str) -> str | None:
        m = self.model.get(ref)
        if who == "producer" or m is None:
            return None
        if who == "owner" and m.owner is not None:
            return m.owner
        if who in ("owner", "member") and m.role is not None:
            people = sorted(self.members.get((ref[0], m.role), frozenset()))
            if people:
                return people[self.serial % len(people)]
        return next(self.who(o) for o in OWNERS if self.who(o) != m.owner)

    # ------------------------------------------------------------------ rules

    @rule(
        target=tasks,
        tenant=st.sampled_from(TENANTS),
        owner=st.sampled_from(OWNERS),
        queue=st.sampled_from((None, *ROLES)),
        instance=st.sampled_from((None, *INSTANCES)),
        postponed=st.sampled_from((None, -5, 30)),
    )
    def create(
        self,
        tenant: str,
        owner: str,
        queue: str | None,
        instance: str | None,
        postponed: int | None,
    ) -> Any:
        self.serial += 1
        tid = f"{self.prefix}t{self.serial}"
        return self._create(tenant, tid, owner, queue, instance, postponed)

    def _create(
        self,
        tenant: str,
        tid: str,
        owner: str,
        queue: str | None,
        instance: str | None,
        postponed: int | None,
    ) -> Any:
        body = TaskCreate(
            id=tid,
            owner=None if queue else self.who(owner),
            role=self.who(queue) if queue else None,
            title=f"Task {self.serial}",
            process=ProcessRef(instance_id=self.prefix + instance, name="P") if instance else None,
            postponed_until=None
            if postponed is None
            else self.clock + timedelta(minutes=postponed),
        )
        self.apply([CreateTask(body, tenant)])
        return (tenant, tid) if (tenant, tid) in self.model else multiple()

    @rule(
        target=tasks,
        ref=tasks,
        owner=st.sampled_from(OWNERS),
        queue=st.sampled_from((None, *ROLES)),
    )
    def twin_in_the_other_tenant(self, ref: tuple[str, str], owner: str, queue: str | None) -> Any:
        """The same task id (and owner and role names) in the other tenant."""
        other = TENANTS[1 - TENANTS.index(ref[0])]
        return self._create(other, ref[1], owner, queue, None, None)

    @rule(ref=tasks)
    def repeat_create(self, ref: tuple[str, str]) -> None:
        self.apply([CreateTask(self.model[ref].body, ref[0])])

    @rule(
        ref=tasks,
        kind=st.sampled_from(
            ("rename", "complete", "cancel", "postpone", "resume", "claim", "unclaim")
        ),
        who=st.sampled_from(("producer", "owner", "member", "other")),
        minutes=st.sampled_from((-5, 0, 5, 30, 60)),
        user=st.sampled_from(OWNERS),
    )
    def act(self, ref: tuple[str, str], kind: str, who: str, minutes: int, user: str) -> None:
        actor = None if kind == "rename" else self.actor(ref, who)
        self.serial += 1
        self.apply([self.task_op(kind, ref, actor, user if kind == "claim" else minutes)])

    @rule(ref=tasks, owner=st.sampled_from(OWNERS), queue=st.sampled_from((None, *ROLES)))
    def reassign(self, ref: tuple[str, str], owner: str, queue: str | None) -> None:
        if queue is None:
            self.apply([self.task_op("reassign", ref, None, owner)])
        else:
            self.apply([self.task_op("to_queue", ref, None, queue)])

    @rule(ref=tasks, pick=st.integers(0, 100), by_producer=st.booleans())
    def claim(self, ref: tuple[str, str], pick: int, by_producer: bool) -> None:
        """A member of the task's role claims it (a role with nobody in it gets one
        member first); for a task offered to nobody, anyone tries."""
        m = self.model[ref]
        if m.role is not None and not self.members.get((ref[0], m.role)):
            self.set_members(ref[0], m.role[len(self.prefix) :], {OWNERS[pick % len(OWNERS)]})
        people = sorted(self.members.get((ref[0], m.role or ""), frozenset()))
        user = people[pick % len(people)] if people else self.who(OWNERS[pick % len(OWNERS)])
        self.apply([ClaimTask(ref[1], user, None if by_producer else user, ref[0])])

    @rule(ref=tasks, by_producer=st.booleans())
    def unclaim(self, ref: tuple[str, str], by_producer: bool) -> None:
        m = self.model[ref]
        self.apply([UnclaimTask(ref[1], None if by_producer else m.owner, ref[0])])

    @rule(
        tenant=st.sampled_from(TENANTS),
        role=st.sampled_from(ROLES),
        people=st.sets(st.sampled_from(OWNERS)),
    )
    def set_members(self, tenant: str, role: str, people: set[str]) -> None:
        members = tuple(sorted(self.who(p) for p in people))
        op = SetMembers(self.who(role), members, tenant)
        self.r.run(self.r.writes.run(op, now=self.clock))
        self.members[(tenant, self.who(role))] = frozenset(members)
        SEEN["set members"] += 1

    @rule(
        picks=st.lists(
            st.tuples(
                st.sampled_from(
                    ("rename", "reassign", "complete", "cancel", "postpone", "resume", "claim")
                ),
                st.integers(0, 10**6),
                st.sampled_from(OWNERS),
                st.integers(1, 60),
            ),
            min_size=1,
            max_size=8,
        ),
        creates=st.lists(
            st.tuples(st.sampled_from(OWNERS), st.sampled_from((None, *ROLES))), max_size=3
        ),
        tenant=st.sampled_from(TENANTS),
    )
    def batch(
        self,
        picks: list[tuple[str, int, str, int]],
        creates: list[tuple[str, str | None]],
        tenant: str,
    ) -> None:
        ops: list[TaskOp] = []
        for owner, queue in creates:
            self.serial += 1
            tid = f"{self.prefix}t{self.serial}"
            body = TaskCreate(
                id=tid,
                owner=None if queue else self.who(owner),
                role=self.who(queue) if queue else None,
                title=f"Batch {self.serial}",
            )
            ops.append(CreateTask(body, tenant))
        known = sorted(self.model) + [(op.tenant, op.id) for op in ops]
        if not known:
            return
        for kind, pick, owner, minutes in picks:
            ref = known[pick % len(known)]
            self.serial += 1
            arg = owner if kind in ("reassign", "claim") else minutes
            ops.append(self.task_op(kind, ref, None, arg))
        self.apply(ops)

    @rule(tenant=st.sampled_from(TENANTS), instance=st.sampled_from(INSTANCES))
    def cancel_process(self, tenant: str, instance: str) -> None:
        iid = self.prefix + instance
        known = any(t == tenant and m.instance == iid for (t, _), m in self.model.items())
        try:
            op = EndInstance(iid, InstanceStatus.CANCELED, tenant)
            self.r.run(self.r.writes.run(op, now=self.clock))
        except ApiError as exc:
            completed = self.ended(tenant, iid) and not self.ended_canceled(tenant, iid)
            assert (exc.status, exc.code) == (
                (409, "process_ended") if known and completed else (404, "process_not_found")
            ), exc
            return
        assert known and (self.ended_canceled(tenant, iid) or not self.ended(tenant, iid))
        for ref, m in self.model.items():
            if ref[0] == tenant and m.instance == iid and m.status not in FINAL:
                self.model[ref] = replace(m, status="canceled", until=None)
        self.canceled_instances.add((tenant, iid))

    @rule(minutes=st.integers(1, 90))
    def time_passes(self, minutes: int) -> None:
        self.clock += timedelta(minutes=minutes)
        self.r.run(self.r.writes.run(ResumeDue(), now=self.clock))
        for tid, m in self.model.items():
            if m.status == "postponed" and m.until is not None and m.until <= self.clock:
                self.model[tid] = replace(m, status="running", until=None)

    @rule(feed=st.integers(0, 10**6), back=st.integers(-2, 30))
    def reconnect(self, feed: int, back: int) -> None:
        """A client resuming a feed from ``seq - back`` gets exactly what it missed."""
        tenant, name = self.feeds()[feed % len(self.feeds())]
        key = key_of(tenant, name)
        pos = self.r.run(self.r.reads.counter(key))
        count, seq = pos.count, pos.seq
        since = max(0, seq - back)
        view = self.r.run(self.r.log.resume(key, since))
        running = self.running_in(tenant, name)
        waiting = self.postponed_in(tenant, name)
        assert pos.postponed == waiting
        if since > seq:
            assert isinstance(view, Snapshot)
            assert (view.seq, view.count, view.postponed) == (seq, count, waiting)
            assert {t["id"] for t in view.tasks} == running
            return
        assert isinstance(view, Replay)
        assert (view.seq, view.count, view.postponed) == (seq, count, waiting)
        events = [orjson.loads(m) for m in view.messages]
        assert [e["seq"] for e in events] == list(range(since + 1, seq + 1))
        assert all(e["feed"] == name for e in events)
        if events:
            assert events[-1]["count"] == count
            assert events[-1]["counts"] == {"running": count, "postponed": waiting}

    def running_in(self, tenant: str, feed: str) -> set[str]:
        return {
            tid
            for (t, tid), m in self.model.items()
            if t == tenant and m.status == "running" and feed_of(m) == feed
        }

    def postponed_in(self, tenant: str, feed: str) -> int:
        """How many of the model's tasks are postponed in ``feed`` (the postponed count)."""
        return sum(
            1
            for (t, _), m in self.model.items()
            if t == tenant and m.status == "postponed" and feed_of(m) == feed
        )

    # ------------------------------------------------------------------ invariants

    @invariant()
    def feeds_are_exact(self) -> None:
        SEEN["steps checked"] += 1
        names = {name_of(t, f): (t, f) for t, f in self.feeds()}

        async def check() -> Any:
            async with self.r.engines.reader.connect() as conn:
                return await audit(conn, names)

        found = self.r.run(check())
        assert found.problems == []
        for (tenant, tid), m in self.model.items():
            name = tid if tenant == "default" else f"{tenant}/{tid}"
            assert found.statuses.get(name) == m.status, (tenant, tid)
        for name, (tenant, feed) in names.items():
            running = self.running_in(tenant, feed)
            truth = found.owners.get(name)
            assert (truth.running if truth else set()) == running, name
            assert (truth.count if truth else 0) == len(running), name
            assert (truth.postponed if truth else 0) == self.postponed_in(tenant, feed), name


def _code(result: Outcome | ApiError) -> tuple[int, str | None]:
    if isinstance(result, ApiError):
        return result.status, result.code
    return (201 if result.created else 200), None


def run_machine(url: str, examples: int, steps: int) -> None:
    runner = Runner(url)
    SEEN.clear()
    try:
        # Hypothesis documents a factory (any callable) here; its stub says a class.
        run_state_machine_as_test(
            lambda: FeedMachine(runner),  # type: ignore[arg-type]
            settings=settings(
                max_examples=examples,
                stateful_step_count=steps,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        runner.close()
        print(f"\n[feed properties] {dict(sorted(SEEN.items()))}")


def test_any_sequence_of_operations_keeps_feeds_exact_on_sqlite(sqlite_url: str) -> None:
    run_machine(sqlite_url, examples=60, steps=25)


def test_any_sequence_of_operations_keeps_feeds_exact_on_postgres(
    postgres_server: PostgresServer,
) -> None:
    run_machine(postgres_server.create_database(), examples=25, steps=25)
