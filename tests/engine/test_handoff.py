"""``follows``: a step the process gives, right after a completion, to the same person or
to a queue that person is in names the step just completed (Taskbell's ``task.added``
carries it, and the panel offers it at once); any other step does not. Roles from
``camunda:candidateGroups`` (here an expression) and from lanes."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.engine.support import (
    EngineHandle,
    People,
    copy_samples,
    engine_config,
    eventually,
    page_sig,
    serve_engine,
    submit_step,
)
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


async def test_the_page_after_complete_opens_the_next_step_for_the_same_person(
    engine: EngineHandle, people: People
) -> None:
    """Working from the engine's pages: Complete on one step's page, and once Taskbell's
    webhook is in, the page goes on to the step that follows it (no script: a refresh)."""
    iid = await engine.start("customer_onboarding", customer="Globex", reminder_after="PT1H")
    account = await people.wait_task("alice", iid, "set_up_account")
    docs = await people.wait_task("carol", iid, "check_documents")
    answer = await submit_step(account["url"], {})
    assert answer.status_code == 303
    # The producer (the page) completed it for alice, its owner: her next step follows.
    contract = await people.wait_task("alice", iid, "send_contract")
    assert contract["follows"] == account["id"]
    done_url = engine.base_url + answer.headers["location"]
    async with httpx.AsyncClient(trust_env=False) as c:
        page = (await c.get(done_url)).text
        next_page = (await c.get(contract["url"])).text
    assert "Next: Send Globex the contract" in page
    assert f'<meta http-equiv="refresh" content="1;url={contract["url"]}">' in page
    # The next page shows the instance data, but not what is None (no comment given).
    assert "<dt>completed_by</dt><dd>alice</dd>" in next_page
    assert "<dt>comment</dt>" not in next_page and "None" not in next_page

    # carol's step is followed by nothing of hers: her page just says it is done.
    answer = await submit_step(docs["url"], {})
    await eventually(lambda: _step_done(engine, iid, docs["id"]), what="the engine has it")
    async with httpx.AsyncClient(trust_env=False) as c:
        page = (await c.get(engine.base_url + answer.headers["location"])).text
    assert "Completed: the process moves on." in page
    assert "Next:" not in page and "http-equiv" not in page


async def _step_done(engine: EngineHandle, iid: str, step_id: str) -> bool:
    view = await engine.view(iid)
    return any(s["id"] == step_id and s["status"] == "completed" for s in view["steps"])


async def test_the_page_looks_again_while_the_completion_is_on_its_way(
    engine: EngineHandle, people: People
) -> None:
    iid = await engine.start("invoice_approval")
    approve = await people.wait_task("bob", iid, "approve_invoice")
    sig = page_sig(approve["url"])
    base = f"{engine.base_url}/steps/{approve['id']}?sig={sig}"
    async with httpx.AsyncClient(trust_env=False) as c:
        first = (await c.get(base + "&done=1")).text
        last = (await c.get(base + "&done=10")).text
        odd = (await c.get(base + "&done=x")).text
    # The engine has no completion yet: look again in a second, at most ten times.
    assert f'content="1;url=/steps/{approve["id"]}?sig={sig}&amp;done=2"' in first
    assert "http-equiv" not in last and "http-equiv" not in odd
    assert "Completed: the process moves on." in last


async def test_the_page_of_a_queue_step_does_not_hand_on_a_persons_next_step(
    engine: EngineHandle, people: People
) -> None:
    """bob takes the approval from the queue and decides it on its page; the next step
    is his (it follows), but the approval's link was the whole queue's: its done page
    does not lead to bob's page."""
    iid = await engine.start("invoice_approval", invoice_id="INV-14", requester="bob")
    approve = await people.wait_task("carol", iid, "approve_invoice")
    await people.claim("bob", approve["id"])
    answer = await submit_step(approve["url"], {"decision": "reject", "comment": "late"})
    assert answer.status_code == 303
    told = await people.wait_task("bob", iid, "tell_rejected", feeds="own")
    assert told["follows"] == approve["id"]
    async with httpx.AsyncClient(trust_env=False) as c:
        page = (await c.get(engine.base_url + answer.headers["location"])).text
    assert "Completed: the process moves on." in page
    assert told["url"] not in page and "http-equiv" not in page
