"""From a user task to Taskbell's fields, without servers: roles from lanes, due dates
from ``camunda:dueDate`` (dates, zones, durations, expressions), priorities, actions and
their comment rules, and when a new step ``follows`` the one just completed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from SpiffWorkflow.util.task import TaskState

from engine.app import SAMPLES
from engine.bpmn import advance, load_dir
from engine.core import Engine, Handoff, comment_rule, lane_role, task_actions
from engine.store import Store

HERE = Path(__file__).resolve().parent


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    store = Store(tmp_path / "m.db")
    library = load_dir(SAMPLES)
    yield Engine(library, store, "http://127.0.0.1:1")
    store.close()


def _ready(engine: Engine, process: str, **data: Any) -> Any:
    workflow = engine.library.definitions[process].new_workflow(engine.script_engine)
    workflow.get_tasks()[0].data.update({**engine.library.definitions[process].defaults, **data})
    advance(workflow)
    return workflow.get_tasks(state=TaskState.READY, manual=True)[0]


def test_due_dates(engine: Engine) -> None:
    task = _ready(engine, "escalation", escalate_after="PT2H", due="2026-12-24T10:00:00+02:00")
    now = datetime.now(UTC)
    relative = datetime.fromisoformat(str(engine._due_at(task, "${escalate_after}")))
    assert timedelta(hours=2) <= relative - now < timedelta(hours=2, seconds=5)
    assert engine._due_at(task, "${due}") == "2026-12-24T08:00:00.000000Z"  # to UTC
    assert engine._due_at(task, "2026-12-24T10:00:00") == "2026-12-24T10:00:00.000000Z"
    assert engine._due_at(task, "2026-12-24") == "2026-12-24T00:00:00.000000Z"
    assert engine._due_at(task, "${no_such_variable}") is None
    assert engine._due_at(task, "next tuesday") is None
    assert engine._due_at(task, None) is None


def test_priorities(engine: Engine) -> None:
    task = _ready(engine, "escalation", prio="URGENT")
    assert engine._priority(task, "high") == "high"
    assert engine._priority(task, "${prio}") == "urgent"
    assert engine._priority(task, "soon") is None
    assert engine._priority(task, None) is None


def test_actions_and_comment_rules(engine: Engine) -> None:
    approve = engine.library.definitions["invoice_approval"].spec.task_specs["approve_invoice"]
    assert task_actions(approve) == [
        {"id": "approve", "label": "Approve", "comment": "optional"},  # a comment field
        {"id": "reject", "label": "Reject", "comment": "required"},  # comment.reject
    ]
    review = engine.library.definitions["escalation"].spec.task_specs["manager_review"]
    assert comment_rule(review, "resolved") == "none"  # no comment field, no property
    assert comment_rule(review, "drop") == "optional"
    told = engine.library.definitions["invoice_approval"].spec.task_specs["tell_approved"]
    assert task_actions(told) is None
    six = SimpleNamespace(
        name="many",
        extensions={},
        form=SimpleNamespace(
            fields=[
                SimpleNamespace(
                    id="pick",
                    type="enum",
                    options=[SimpleNamespace(id=str(i), name=None) for i in range(6)],
                )
            ]
        ),
    )
    assert task_actions(six) is None  # Taskbell takes at most 5


def test_lane_roles_and_the_roles_asked_about(engine: Engine) -> None:
    assert lane_role("Finance Team") == "finance_team"
    assert lane_role(" Managers ") == "managers"
    assert engine.roles() == ["approvers", "managers"]
    handoff = load_dir(HERE / "bpmn").definitions["handoff"]
    assert handoff.spec.task_specs["publish"].lane == "Managers"


def test_who_a_new_step_follows() -> None:
    members = {"managers": frozenset({"carol"})}
    by_carol = Handoff("s1", "carol", None, members)
    assert by_carol.hands_to("carol", None)
    assert not by_carol.hands_to("alice", None)
    assert by_carol.hands_to(None, "managers")  # a queue she is in
    assert not by_carol.hands_to(None, "approvers")  # members not known: not hers
    from_queue = Handoff("s1", "bob", "approvers", {})
    assert from_queue.hands_to(None, "approvers")  # the queue bob just worked from
    nobody = Handoff("s1", None, "approvers", members)
    assert not nobody.hands_to(None, "approvers") and not nobody.hands_to("bob", None)
