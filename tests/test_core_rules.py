"""The pure core, without sockets or SQL: wire parsing and the task state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server import transitions as rules
from server.errors import CloseCode, Conflict, NotFound, Unprocessable
from server.wire import (
    AuthMessage,
    EventType,
    PingMessage,
    ProtocolViolation,
    Status,
    TaskCreate,
    TaskPatch,
    parse_client_message,
)

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def created(owner: str = "alice", **kw: object) -> rules.TaskState:
    body = TaskCreate.model_validate({"id": "t-1", "owner": owner, "title": "Do it", **kw})
    state = rules.create(body, None, NOW).state
    assert state is not None
    return state


def test_auth_message_parses_with_optional_since() -> None:
    msg = parse_client_message('{"type": "auth", "token": "abc", "since": 4}')
    assert isinstance(msg, AuthMessage) and msg.since == 4
    assert isinstance(parse_client_message(b'{"type": "ping"}'), PingMessage)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{", "not valid JSON"),
        ("42", "object with a type"),
        ('{"type": 5}', "object with a type"),
        ('{"type": "launch"}', "unknown message type"),
        ('{"type": "auth"}', "token"),
        ('{"type": "auth", "token": "t", "since": "x"}', "since"),
        ('{"type": "ping", "extra": true}', "extra"),
    ],
)
def test_bad_client_messages_are_1008_with_a_reason(raw: str, fragment: str) -> None:
    with pytest.raises(ProtocolViolation) as info:
        parse_client_message(raw)
    assert info.value.code == CloseCode.BAD_MESSAGE
    assert fragment in info.value.reason
    assert len(info.value.reason.encode()) <= 123  # fits a close frame


def test_create_is_added_with_plus_one() -> None:
    body = TaskCreate.model_validate({"id": "t-1", "owner": "alice", "title": "Do it"})
    outcome = rules.create(body, None, NOW)
    assert outcome.created
    assert outcome.effects == (rules.Effect("default/user:alice", EventType.ADDED, "created", 1),)


def test_identical_repeat_is_200_without_effects_and_other_body_conflicts() -> None:
    state = created()
    same = TaskCreate.model_validate({"id": "t-1", "owner": "alice", "title": "Do it"})
    other = TaskCreate.model_validate({"id": "t-1", "owner": "alice", "title": "Other"})
    repeat = rules.create(same, state, NOW)
    assert (repeat.created, repeat.state, repeat.effects) == (False, None, ())
    with pytest.raises(Conflict):
        rules.create(other, state, NOW)


def test_create_postponed_into_the_future_is_not_in_the_feed() -> None:
    later = (NOW + timedelta(hours=1)).isoformat()
    body = TaskCreate.model_validate(
        {"id": "t", "owner": "a", "title": "x", "postponed_until": later}
    )
    outcome = rules.create(body, None, NOW)
    assert outcome.state is not None and outcome.state.status == Status.POSTPONED
    assert outcome.effects == ()


def test_reassigning_a_running_task_removes_and_adds() -> None:
    outcome = rules.update("t-1", TaskPatch(owner="bob"), created(), NOW)
    assert [(e.key, e.type, e.delta) for e in outcome.effects] == [
        ("default/user:alice", EventType.REMOVED, -1),
        ("default/user:bob", EventType.ADDED, 1),
    ]


def test_reassigning_a_postponed_task_changes_no_feed() -> None:
    state = rules.postpone("t-1", NOW + timedelta(days=1), created(), NOW, None).state
    outcome = rules.update("t-1", TaskPatch(owner="bob"), state, NOW)
    assert outcome.state is not None and outcome.state.owner == "bob"
    assert outcome.effects == ()


def test_unchanged_patch_is_a_no_op() -> None:
    outcome = rules.update("t-1", TaskPatch(title="Do it"), created(), NOW)
    assert outcome.state is None and outcome.effects == ()


@pytest.mark.parametrize("final", [Status.COMPLETED, Status.CANCELED])
def test_final_tasks_refuse_every_change(final: Status) -> None:
    state = rules.finish("t-1", final, created(), NOW, None).state
    assert state is not None
    later = NOW + timedelta(hours=1)
    with pytest.raises(Conflict):
        rules.postpone("t-1", later, state, NOW, None)
    with pytest.raises(Conflict):
        rules.update("t-1", TaskPatch(title="x"), state, NOW)
    with pytest.raises(Conflict):
        rules.resume("t-1", state, NOW, None)
    other = Status.CANCELED if final == Status.COMPLETED else Status.COMPLETED
    with pytest.raises(Conflict):
        rules.finish("t-1", other, state, NOW, None)
    assert rules.finish("t-1", final, state, NOW, None).state is None


def test_someone_elses_task_is_not_found() -> None:
    with pytest.raises(NotFound):
        rules.finish(
            "t-1", Status.COMPLETED, created("alice"), NOW, "mallory", frozenset({"user:mallory"})
        )
    with pytest.raises(NotFound):
        rules.finish("t-1", Status.COMPLETED, None, NOW, "alice", frozenset({"user:alice"}))


def test_postpone_needs_a_future_time_and_resume_brings_it_back() -> None:
    with pytest.raises(Unprocessable):
        rules.postpone("t-1", NOW, created(), NOW, None)
    later = rules.postpone("t-1", NOW + timedelta(hours=2), created(), NOW, None)
    assert later.effects[0].type == EventType.REMOVED
    assert later.state is not None
    back = rules.resume("t-1", later.state, NOW, "alice")
    assert back.state is not None and back.state.status == Status.RUNNING
    assert back.effects == (rules.Effect("default/user:alice", EventType.ADDED, "resumed", 1),)


def test_rescheduling_a_postponed_task_is_an_update_without_feed_effects() -> None:
    later = rules.postpone("t-1", NOW + timedelta(hours=2), created(), NOW, None)
    moved = rules.update(
        "t-1", TaskPatch(postponed_until=NOW + timedelta(hours=5)), later.state, NOW
    )
    assert moved.state is not None and moved.effects == ()
    assert moved.state.postponed_until == NOW + timedelta(hours=5)
