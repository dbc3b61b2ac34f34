"""The count arithmetic, pure (``server.counts`` and the effects ``decide`` returns): every
change moves each feed's running and postponed counts by exactly (after) - (before), and
a feed whose counts move gets an event, a ``task.removed`` of 0 running when only its
postponed count moved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.counts import Place, counts_json, postponed_moves
from server.ops import (
    CancelTask,
    ClaimTask,
    CompleteTask,
    CreateTask,
    PostponeTask,
    ResumeTask,
    TaskOp,
    UnclaimTask,
    UpdateTask,
)
from server.transitions import Effect, TaskState, decide
from server.wire import EventType, Status, TaskCreate, TaskPatch

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=2)
ALICE, BOB, QUEUE = "default/user:alice", "default/user:bob", "default/role:approvers"
MEMBERS = frozenset({"role:approvers", "user:bob"})


def make(op: TaskOp, current: TaskState | None = None) -> tuple[TaskState, tuple[Effect, ...]]:
    outcome = decide(op, current, NOW, None, MEMBERS)
    assert outcome.state is not None
    return outcome.state, outcome.effects


def create(postponed: bool = False, **body: object) -> TaskCreate:
    fields: dict[str, object] = {"id": "t1", "owner": "alice", "title": "Do it", **body}
    if postponed:
        fields["postponed_until"] = LATER.isoformat()
    return TaskCreate.model_validate(fields)


def moves(effects: tuple[Effect, ...]) -> list[tuple[str, EventType, str | None, int, int]]:
    return [(e.key, e.type, e.reason, e.delta, e.postponed) for e in effects]


def test_postponed_moves_are_after_minus_before() -> None:
    run, wait = Status.RUNNING.value, Status.POSTPONED.value
    assert postponed_moves(None, Place(ALICE, wait)) == {ALICE: 1}
    assert postponed_moves(Place(ALICE, wait), Place(ALICE, run)) == {ALICE: -1}
    assert postponed_moves(Place(ALICE, wait), Place(BOB, wait)) == {ALICE: -1, BOB: 1}
    assert postponed_moves(Place(ALICE, wait), Place(ALICE, wait)) == {}
    assert postponed_moves(Place(ALICE, run), Place(ALICE, Status.CANCELED.value)) == {}
    assert counts_json(3, 1) == {"running": 3, "postponed": 1}


def test_a_task_created_postponed_is_a_removed_event_of_the_postponed_count_alone() -> None:
    _, effects = make(CreateTask(create(postponed=True)))
    assert moves(effects) == [(ALICE, EventType.REMOVED, "created", 0, 1)]


def test_a_running_create_moves_only_the_running_count() -> None:
    _, effects = make(CreateTask(create()))
    assert moves(effects) == [(ALICE, EventType.ADDED, "created", 1, 0)]


def test_postpone_and_resume_move_both_counts_in_one_event() -> None:
    running, _ = make(CreateTask(create()))
    waiting, effects = make(PostponeTask("t1", LATER), running)
    assert moves(effects) == [(ALICE, EventType.REMOVED, "postponed", -1, 1)]
    _, effects = make(ResumeTask("t1", by_clock=True), waiting)
    assert moves(effects) == [(ALICE, EventType.ADDED, "resumed", 1, -1)]


def test_postponing_again_to_another_time_moves_nothing() -> None:
    waiting, _ = make(CreateTask(create(postponed=True)))
    _, effects = make(PostponeTask("t1", LATER + timedelta(hours=1)), waiting)
    assert effects == ()


@pytest.mark.parametrize(
    ("op", "reason"),
    [(CancelTask("t1"), "canceled"), (CompleteTask("t1"), "completed")],
)
def test_ending_a_postponed_task_lowers_the_postponed_count(op: TaskOp, reason: str) -> None:
    waiting, _ = make(CreateTask(create(postponed=True)))
    _, effects = make(op, waiting)
    assert moves(effects) == [(ALICE, EventType.REMOVED, reason, 0, -1)]


def test_reassigning_a_postponed_task_moves_its_count_between_the_feeds() -> None:
    waiting, _ = make(CreateTask(create(postponed=True)))
    _, effects = make(UpdateTask("t1", TaskPatch.model_validate({"owner": "bob"})), waiting)
    assert moves(effects) == [
        (ALICE, EventType.REMOVED, "reassigned", 0, -1),
        (BOB, EventType.REMOVED, "reassigned", 0, 1),
    ]


def test_claiming_and_unclaiming_a_postponed_queue_task_move_its_count() -> None:
    body = create(postponed=True, owner=None, role="approvers")
    waiting, effects = make(CreateTask(body))
    assert moves(effects) == [(QUEUE, EventType.REMOVED, "created", 0, 1)]
    claimed, effects = make(ClaimTask("t1", "bob"), waiting)
    assert moves(effects) == [
        (QUEUE, EventType.REMOVED, "claimed", 0, -1),
        (BOB, EventType.REMOVED, "claimed", 0, 1),
    ]
    _, effects = make(UnclaimTask("t1"), claimed)
    assert moves(effects) == [
        (BOB, EventType.REMOVED, "unclaimed", 0, -1),
        (QUEUE, EventType.REMOVED, "unclaimed", 0, 1),
    ]


def test_a_running_tasks_moves_leave_the_postponed_count_alone() -> None:
    running, _ = make(CreateTask(create()))
    _, effects = make(UpdateTask("t1", TaskPatch.model_validate({"owner": "bob"})), running)
    assert [e.postponed for e in effects] == [0, 0]
    _, effects = make(CancelTask("t1"), running)
    assert moves(effects) == [(ALICE, EventType.REMOVED, "canceled", -1, 0)]


def test_a_sequence_of_changes_sums_to_the_postponed_tasks_held() -> None:
    """Whatever the order, adding up every effect gives, per feed, the tasks postponed there."""
    totals: dict[str, int] = {}
    state, effects = make(CreateTask(create(postponed=True)))
    steps: list[TaskOp] = [
        ResumeTask("t1"),
        PostponeTask("t1", LATER),
        UpdateTask("t1", TaskPatch.model_validate({"owner": "bob"})),
        CancelTask("t1"),
    ]
    for e in effects:
        totals[e.key] = totals.get(e.key, 0) + e.postponed
    for op in steps:
        state, effects = make(op, state)
        for e in effects:
            totals[e.key] = totals.get(e.key, 0) + e.postponed
        held = {state.key: 1} if state.status == Status.POSTPONED else {}
        assert {k: v for k, v in totals.items() if v} == held
