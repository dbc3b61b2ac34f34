"""The feed rules as a property: any sequence of operations on the real ``Store``
keeps every owner's seqs contiguous and their count exact.

A Hypothesis state machine drives creates (some postponed, some in a process
instance), idempotent repeats, renames, reassignments, postponements, resumptions,
completions and cancellations (by the producer, the owner or someone else), batches of
those in one transaction, process cancels, and the clock moving on so that postponed
tasks come back by the timer. A small model of the contract's state machine predicts
each answer. After every step:

- the database's audit (``tests/faults/audit.py``) finds nothing: seqs 1..n with no
  gap, each event's count equal to the replayed running set, the replay ending with
  exactly the running tasks, ``feed.count`` equal to their number;
- every task's status and owner are what the model says;
- resuming from any ``since`` gives exactly the missing events (contiguous, ending at
  the feed's seq and count), or a snapshot of the running tasks when ``since`` is
  ahead.

It runs on SQLite and on PostgreSQL, one database per run; each example works under
its own owner and id prefix.
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
from server.migrate import upgrade
from server.ops import (
    CancelTask,
    CompleteTask,
    CreateTask,
    EndInstance,
    InstanceStatus,
    PostponeTask,
    ResumeDue,
    ResumeTask,
    TaskOp,
    UpdateTask,
)
from server.reads import Reads
from server.transitions import Outcome
from server.wire import ProcessRef, TaskCreate, TaskPatch
from server.writes import Writes
from tests.faults.audit import audit
from tests.support.app import key
from tests.support.services import PostgresServer

T = TypeVar("T")

OWNERS = ("ann", "ben", "cat")
INSTANCES = ("p1", "p2", "p3")
FINAL = ("completed", "canceled")
_runs = itertools.count()
SEEN: Counter[str] = Counter()  # what the runs did, printed at the end (pytest -s)


@dataclass(frozen=True)
class Model:
    """What the contract says one task is."""

    owner: str
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


def decide(op: TaskOp, m: Model | None, now: datetime) -> Expect:
    """The contract's rules for one operation (the contract's "status" section)."""
    if isinstance(op, CreateTask):
        if m is not None:
            return Expect(200, None, m) if m.body == op.body else Expect(409, "x", m)
        until = op.body.postponed_until
        status = "postponed" if until is not None and until > now else "running"
        instance = op.body.process.instance_id if op.body.process else None
        assert op.body.owner is not None
        return Expect(201, None, Model(op.body.owner, status, instance, until, op.body))
    if m is None or (op.actor is not None and op.actor != m.owner):
        return Expect(404, "task_not_found", m)
    match op:
        case UpdateTask(patch=patch):
            if m.status in FINAL:
                return Expect(409, "illegal_transition", m)
            return Expect(200, None, replace(m, owner=patch.owner or m.owner))
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
    # resume
    if m.status in FINAL:
        return Expect(409, "illegal_transition", m)
    return Expect(200, None, replace(m, status="running", until=None))


class FeedMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")

    def __init__(self, runner: Runner) -> None:
        super().__init__()
        SEEN["examples"] += 1
        self.r = runner
        self.prefix = f"r{next(_runs)}-"
        self.clock = datetime(2030, 1, 1, tzinfo=UTC)
        self.model: dict[str, Model] = {}
        self.canceled_instances: set[str] = set()
        self.serial = 0

    # ------------------------------------------------------------------ helpers

    def at(self, minutes: int) -> datetime:
        return self.clock + timedelta(minutes=minutes)

    def who(self, owner: str) -> str:
        return self.prefix + owner

    def ended(self, instance: str, model: Mapping[str, Model] | None = None) -> bool:
        """Canceled, or ended by itself when its last open step ended."""
        if instance in self.canceled_instances:
            return True
        steps = [m for m in (model or self.model).values() if m.instance == instance]
        return bool(steps) and all(m.status in FINAL for m in steps)

    def ended_canceled(self, instance: str) -> bool:
        """Ended as canceled: by the producer, or by itself with every step canceled
        (its steps are final, so what they are now is what they were at its end)."""
        if instance in self.canceled_instances:
            return True
        steps = [m for m in self.model.values() if m.instance == instance]
        return bool(steps) and all(m.status == "canceled" for m in steps)

    def apply(self, ops: list[TaskOp]) -> None:
        """Apply ``ops`` in one transaction; each answer must be the predicted one."""
        working = dict(self.model)
        expected: list[Expect] = []
        for op in ops:
            m = working.get(op.id)
            ended = (
                isinstance(op, CreateTask)
                and m is None
                and op.body.process is not None
                and self.ended(op.body.process.instance_id, working)
            )
            if ended:
                expected.append(Expect(409, "process_ended", None))
                continue
            e = decide(op, m, self.clock)
            expected.append(e)
            if e.after is not None and e.code < 300:
                working[op.id] = e.after
        applied = self.r.run(self.r.writes.apply(ops, now=self.clock))
        SEEN["transactions"] += 1
        SEEN["events"] += len(applied.envelopes)
        for op, e, got in zip(ops, expected, applied.results, strict=True):
            SEEN[f"{op.kind} {e.code}"] += 1
            assert _code(got) == (e.code, e.error if e.code >= 300 else None), (op, e, got)
        self.model = working

    def task_op(self, kind: str, tid: str, actor: str | None, arg: Any = None) -> TaskOp:
        if kind == "rename":
            return UpdateTask(tid, TaskPatch(title=f"Renamed {self.serial}"))
        if kind == "reassign":
            return UpdateTask(tid, TaskPatch(owner=self.who(arg)))
        if kind == "postpone":
            return PostponeTask(tid, self.clock + timedelta(minutes=arg), actor)
        finishers: dict[str, type[CompleteTask | CancelTask | ResumeTask]] = {
            "complete": CompleteTask,
            "cancel": CancelTask,
            "resume": ResumeTask,
        }
        return finishers[kind](tid, actor)

    def actor(self, tid: str, who: str) -> str | None:
        m = self.model.get(tid)
        if who == "producer" or m is None:
            return None
        if who == "owner":
            return m.owner
        return next(self.who(o) for o in OWNERS if self.who(o) != m.owner)

    # ------------------------------------------------------------------ rules

    @rule(
        target=tasks,
        owner=st.sampled_from(OWNERS),
        instance=st.sampled_from((None, *INSTANCES)),
        postponed=st.sampled_from((None, -5, 30)),
    )
    def create(self, owner: str, instance: str | None, postponed: int | None) -> Any:
        self.serial += 1
        tid = f"{self.prefix}t{self.serial}"
        body = TaskCreate(
            id=tid,
            owner=self.who(owner),
            title=f"Task {self.serial}",
            process=ProcessRef(instance_id=self.prefix + instance, name="P") if instance else None,
            postponed_until=None
            if postponed is None
            else self.clock + timedelta(minutes=postponed),
        )
        self.apply([CreateTask(body)])
        return tid if tid in self.model else multiple()

    @rule(tid=tasks)
    def repeat_create(self, tid: str) -> None:
        self.apply([CreateTask(self.model[tid].body)])

    @rule(
        tid=tasks,
        kind=st.sampled_from(("rename", "complete", "cancel", "postpone", "resume")),
        who=st.sampled_from(("producer", "owner", "other")),
        minutes=st.sampled_from((-5, 0, 5, 30, 60)),
    )
    def act(self, tid: str, kind: str, who: str, minutes: int) -> None:
        actor = None if kind == "rename" else self.actor(tid, who)
        self.serial += 1
        self.apply([self.task_op(kind, tid, actor, minutes)])

    @rule(tid=tasks, owner=st.sampled_from(OWNERS))
    def reassign(self, tid: str, owner: str) -> None:
        self.apply([self.task_op("reassign", tid, None, owner)])

    @rule(
        picks=st.lists(
            st.tuples(
                st.sampled_from(("rename", "reassign", "complete", "cancel", "postpone", "resume")),
                st.integers(0, 10**6),
                st.sampled_from(OWNERS),
                st.integers(1, 60),
            ),
            min_size=1,
            max_size=8,
        ),
        creates=st.lists(st.sampled_from(OWNERS), max_size=3),
    )
    def batch(self, picks: list[tuple[str, int, str, int]], creates: list[str]) -> None:
        ops: list[TaskOp] = []
        for owner in creates:
            self.serial += 1
            tid = f"{self.prefix}t{self.serial}"
            body = TaskCreate(id=tid, owner=self.who(owner), title=f"Batch {self.serial}")
            ops.append(CreateTask(body))
        known = sorted(self.model) + [op.id for op in ops]
        if not known:
            return
        for kind, pick, owner, minutes in picks:
            tid = known[pick % len(known)]
            self.serial += 1
            arg = owner if kind == "reassign" else minutes
            ops.append(self.task_op(kind, tid, None, arg))
        self.apply(ops)

    @rule(instance=st.sampled_from(INSTANCES))
    def cancel_process(self, instance: str) -> None:
        iid = self.prefix + instance
        known = any(m.instance == iid for m in self.model.values())
        try:
            self.r.run(self.r.writes.run(EndInstance(iid, InstanceStatus.CANCELED), now=self.clock))
        except ApiError as exc:
            completed = self.ended(iid) and not self.ended_canceled(iid)
            assert (exc.status, exc.code) == (
                (409, "process_ended") if known and completed else (404, "process_not_found")
            ), exc
            return
        assert known and (self.ended_canceled(iid) or not self.ended(iid))
        for tid, m in self.model.items():
            if m.instance == iid and m.status not in FINAL:
                self.model[tid] = replace(m, status="canceled", until=None)
        self.canceled_instances.add(iid)

    @rule(minutes=st.integers(1, 90))
    def time_passes(self, minutes: int) -> None:
        self.clock += timedelta(minutes=minutes)
        self.r.run(self.r.writes.run(ResumeDue(), now=self.clock))
        for tid, m in self.model.items():
            if m.status == "postponed" and m.until is not None and m.until <= self.clock:
                self.model[tid] = replace(m, status="running", until=None)

    @rule(owner=st.sampled_from(OWNERS), back=st.integers(-2, 30))
    def reconnect(self, owner: str, back: int) -> None:
        """A client resuming from ``seq - back`` gets exactly what it missed."""
        pos = self.r.run(self.r.reads.counter(key(self.who(owner))))
        count, seq = pos.count, pos.seq
        since = max(0, seq - back)
        view = self.r.run(self.r.log.resume(key(self.who(owner)), since))
        running = {t for t, m in self.model.items() if m.owner == self.who(owner)}
        running = {t for t in running if self.model[t].status == "running"}
        if since > seq:
            assert isinstance(view, Snapshot)
            assert (view.seq, view.count) == (seq, count)
            assert {t["id"] for t in view.tasks} == running
            return
        assert isinstance(view, Replay) and (view.seq, view.count) == (seq, count)
        events = [orjson.loads(m) for m in view.messages]
        assert [e["seq"] for e in events] == list(range(since + 1, seq + 1))
        if events:
            assert events[-1]["count"] == count

    # ------------------------------------------------------------------ invariants

    @invariant()
    def feeds_are_exact(self) -> None:
        SEEN["steps checked"] += 1
        owners = [self.who(o) for o in OWNERS]

        async def check() -> Any:
            async with self.r.engines.reader.connect() as conn:
                return await audit(conn, owners)

        found = self.r.run(check())
        assert found.problems == []
        for tid, m in self.model.items():
            assert found.statuses.get(tid) == m.status, tid
        for owner in owners:
            running = {t for t, m in self.model.items() if m.owner == owner}
            running = {t for t in running if self.model[t].status == "running"}
            truth = found.owners.get(owner)
            assert (truth.running if truth else set()) == running, owner
            assert (truth.count if truth else 0) == len(running), owner


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
