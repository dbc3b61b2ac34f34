"""``follows``: a step the process gives, right after a completion, to the same person or
to a queue that person is in names the step just completed (Taskbell's ``task.added``
carries it, and the panel offers it at once); any other step does not. Roles from
``camunda:candidateGroups`` (here an expression) and from lanes."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engine.support import EngineHandle, People, copy_samples, engine_config, serve_engine
from tests.support.app import Live

HERE = Path(__file__).resolve().parent


@pytest.fixture
async def handoff(taskbell: Live, tmp_path: Path) -> AsyncIterator[EngineHandle]:
    folder = copy_samples(tmp_path / "bpmn")
    shutil.copy(HERE / "bpmn" / "handoff.bpmn", folder / "handoff.bpmn")
    async with serve_engine(engine_config(taskbell.base_url, tmp_path / "h.db", bpmn=folder)) as e:
        yield e


async def test_the_next_step_for_a_queue_the_person_is_in_follows(
    handoff: EngineHandle, people: People
) -> None:
    iid = await handoff.start("handoff", author="carol", reviewers="managers", thing="the memo")
    draft = await people.wait_task("carol", iid, "draft", feeds="own")
    assert (draft["owner"], draft["follows"]) == ("carol", None)
    await people.complete("carol", draft["id"])
    # review: candidateGroups="${reviewers}" → the managers' queue, which carol is in.
    review = await people.wait_task("carol", iid, "review")
    assert (review["owner"], review["role"]) == (None, "managers")
    assert review["follows"] == draft["id"]
    await people.claim("carol", review["id"])
    await people.complete("carol", review["id"])
    # publish: no assignee, no candidateGroups: its lane "Managers" is role managers.
    publish = await people.wait_task("carol", iid, "publish")
    assert (publish["role"], publish["follows"]) == ("managers", review["id"])
    view = await handoff.view(iid)
    assert [s["follows"] for s in view["steps"]] == [None, draft["id"], review["id"]]


async def test_a_step_for_someone_else_does_not_follow(
    handoff: EngineHandle, people: People
) -> None:
    iid = await handoff.start("handoff", author="alice", reviewers="managers", thing="the plan")
    draft = await people.wait_task("alice", iid, "draft")
    await people.complete("alice", draft["id"])
    review = await people.wait_task("carol", iid, "review")
    assert review["follows"] is None  # alice is not in managers
    assert await people.running("alice") == []
    # carol completes it from the queue without claiming: the next queue step is hers too.
    await people.complete("carol", review["id"])
    publish = await people.wait_task("carol", iid, "publish")
    assert publish["follows"] == review["id"]
    # bob, outside the queue, completes nothing and sees nothing.
    assert await people.running("bob") == []
    await people.complete("carol", publish["id"])
    await people.wait_process(iid, "completed")


async def test_a_membership_changed_in_taskbell_counts_at_once(
    handoff: EngineHandle, people: People
) -> None:
    await people.set_roles({"managers": ["carol", "alice"]})
    iid = await handoff.start("handoff", author="alice", reviewers="managers", thing="the memo")
    draft = await people.wait_task("alice", iid, "draft")
    await people.complete("alice", draft["id"])
    review = await people.wait_task("alice", iid, "review")
    assert review["follows"] == draft["id"]  # alice is a manager now
