"""The three sample processes end to end: a real engine, a real Taskbell, real signed
webhooks on loopback; people claim and complete their steps through Taskbell's API with
their own tokens (or through the engine's step page), and the next step appears by
itself: from a role queue (``camunda:candidateGroups``), with the decision's actions,
due dates and priorities from the BPMN, and ``follows`` when it is for the same person."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.engine.support import EngineHandle, People, eventually, submit_step
from tests.support.app import Live
from tests.support.tasks import assert_error

DECISION = [
    {"id": "approve", "label": "Approve", "comment": "optional"},
    {"id": "reject", "label": "Reject", "comment": "required"},
]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_invoice_approved_through_the_approvers_queue(
    engine: EngineHandle, people: People
) -> None:
    iid = await engine.start("invoice_approval", invoice_id="INV-9", requester="alice")
    approve = await people.wait_task("bob", iid, "approve_invoice")
    assert approve["id"] == f"{iid}.approve_invoice.1"
    assert (approve["owner"], approve["role"]) == (None, "approvers")  # candidateGroups
    assert approve["title"] == "Approve invoice INV-9 (1,250.00 EUR)"
    assert approve["kind"] == "page" and approve["priority"] == "high"
    assert approve["actions"] == DECISION  # the form's enum field; comment.reject
    due = _when(approve["due_at"]) - datetime.now(UTC)  # camunda:dueDate="P2D"
    assert timedelta(days=2) - timedelta(minutes=1) < due <= timedelta(days=2)
    assert approve["follows"] is None
    assert approve["process"] == {"instance_id": iid, "name": "Invoice approval"}
    assert approve["url"].startswith(engine.base_url + f"/steps/{approve['id']}?sig=")
    # The engine's own view: running, and the step it waits for now.
    view = await engine.view(iid)
    assert (view["status"], view["process"], view["name"]) == (
        "running",
        "invoice_approval",
        "Invoice approval",
    )
    assert view["current"] == [
        {
            "id": approve["id"],
            "owner": None,
            "role": "approvers",
            "title": approve["title"],
            "url": approve["url"],
        }
    ]
    # Every member sees it in the queue; alice (not a member) does not.
    assert [t["id"] for t in await people.running("carol")] == [approve["id"]]
    assert await people.running("alice") == []
    # The step's page is a real page.
    async with httpx.AsyncClient(trust_env=False) as c:
        page = await c.get(approve["url"])
        forged = await c.get(approve["url"].split("?")[0] + "?sig=" + "0" * 32)
        elsewhere = await c.get(f"{engine.base_url}/steps/{iid}.tell_approved.1?sig=x")
        odd = await c.get(approve["url"].split("?")[0] + "?sig=%C3%A9")
    assert page.status_code == 200 and "Approve invoice INV-9" in page.text
    assert 'value="reject"' in page.text and "step for role:approvers" in page.text
    # The link is the key: without its signature, no page.
    assert (forged.status_code, elsewhere.status_code, odd.status_code) == (404, 404, 404)

    # bob claims it: it leaves the queue (carol sees it no more) and is his.
    claimed = await people.claim("bob", approve["id"])
    assert claimed["owner"] == "bob"
    assert await people.running("carol") == []
    # A person must decide (the task has actions).
    assert_error(await people.try_complete("bob", approve["id"]), 422, "outcome_required")
    done = await people.complete("bob", approve["id"], "approve")
    assert (done["outcome"], done["completed_by"]) == ("approve", "bob")

    told = await people.wait_task("alice", iid, "tell_approved")
    assert told["title"] == "Invoice INV-9 approved"
    assert (told["owner"], told["follows"]) == ("alice", None)  # not the approver
    assert told["actions"] is None
    view = await engine.view(iid)
    assert view["data"]["decision"] == "approve" and view["data"]["outcome"] == "approve"
    assert view["data"]["completed_by"] == "bob" and view["data"]["comment"] is None
    await people.complete("alice", told["id"])

    ended = await people.wait_process(iid, "completed")
    assert [(s["id"], s["status"]) for s in ended["steps"]] == [
        (approve["id"], "completed"),
        (told["id"], "completed"),
    ]
    assert ended["duration_ms"] > 0
    view = await eventually(lambda: _ended(engine, iid), what="engine ended")
    assert view["status"] == "completed" and view["current"] == []
    assert view["data"]["payment_scheduled"] is True  # the script task ran
    assert view["data"]["completed_by"] == "alice" and view["data"]["actor"] == "alice"
    assert [s["completed_by"] for s in view["steps"]] == ["bob", "alice"]
    assert [(s["owner"], s["role"]) for s in view["steps"]] == [
        (None, "approvers"),
        ("alice", None),
    ]
    assert await people.running("bob") == [] and await people.running("alice") == []


async def _ended(engine: EngineHandle, iid: str) -> dict[str, Any] | None:
    view = await engine.view(iid)
    return view if view["status"] != "running" and view["pending_calls"] == 0 else None


async def test_invoice_reject_needs_a_comment_and_the_requesters_step_follows(
    engine: EngineHandle, people: People
) -> None:
    """bob asks, and bob (an approver too) decides: the requester's step is for the
    person who just completed the approval, so it ``follows`` it."""
    iid = await engine.start("invoice_approval", invoice_id="INV-10", requester="bob")
    approve = await people.wait_task("carol", iid, "approve_invoice")
    # A reject without a comment is refused, by Taskbell and by the engine's page.
    assert_error(
        await people.try_complete("carol", approve["id"], "reject"), 422, "comment_required"
    )
    assert_error(
        await people.try_complete("carol", approve["id"], "reject", "  "), 422, "comment_required"
    )
    refused = await submit_step(approve["url"], {"decision": "reject", "comment": ""})
    assert refused.status_code == 422 and "Required: Comment (required to reject)" in refused.text
    assert [t["id"] for t in await people.running("bob")] == [approve["id"]]

    # bob rejects from the queue without claiming it first (any member may).
    done = await people.complete("bob", approve["id"], "reject", "not our order")
    assert (done["outcome"], done["comment"], done["completed_by"]) == (
        "reject",
        "not our order",
        "bob",
    )
    told = await people.wait_task("bob", iid, "tell_rejected", feeds="own")
    assert told["title"] == "Invoice INV-10 rejected: not our order"
    assert told["follows"] == approve["id"]  # the same person: the hand-off
    view = await engine.view(iid)
    assert "payment_scheduled" not in view["data"]  # the approve branch did not run
    assert (view["data"]["decision"], view["data"]["comment"]) == ("reject", "not our order")
    assert view["data"]["completed_by"] == "bob"
    assert [s["follows"] for s in view["steps"]] == [None, approve["id"]]

    # bob finishes from the engine's page (its Complete button): Taskbell completes it for
    # the producer, and the engine records bob, the step's owner.
    answer = await submit_step(told["url"], {})
    assert answer.status_code == 303
    await people.wait_process(iid, "completed")
    view = await eventually(lambda: _ended(engine, iid), what="engine ended")
    assert view["steps"][1]["completed_by"] == "bob"
    assert view["data"]["actor"] is None  # the producer (the engine's page) completed it


async def test_the_page_sends_the_decision_to_taskbell(
    engine: EngineHandle, people: People
) -> None:
    iid = await engine.start("invoice_approval", invoice_id="INV-12")
    approve = await people.wait_task("bob", iid, "approve_invoice")
    answer = await submit_step(approve["url"], {"decision": "reject", "comment": "twice"})
    assert answer.status_code == 303
    told = await people.wait_task("alice", iid, "tell_rejected")
    assert told["title"] == "Invoice INV-12 rejected: twice"
    assert told["follows"] is None  # the page completed it: nobody in particular
    task = await people.task(approve["id"])
    assert (task["outcome"], task["comment"], task["completed_by"]) == ("reject", "twice", None)


async def test_onboarding_parallel_steps_a_due_date_then_a_timer(
    engine: EngineHandle, people: People
) -> None:
    started = datetime.now(UTC)
    iid = await engine.start(
        "customer_onboarding", customer="Globex", reminder_after="PT1S", documents_due="PT2H"
    )
    docs, account = await asyncio.gather(
        people.wait_task("carol", iid, "check_documents"),
        people.wait_task("alice", iid, "set_up_account"),
    )
    assert docs["title"] == "Check Globex's documents" and docs["kind"] == "edit_record"
    # camunda:dueDate="${documents_due}": a duration counted from the step's creation.
    due = _when(docs["due_at"]) - started
    assert timedelta(hours=2) <= due < timedelta(hours=2, minutes=1)
    assert (docs["priority"], docs["actions"], docs["overdue"]) == ("normal", None, False)
    assert account["title"] == "Set up Globex's account"
    assert (account["due_at"], account["priority"]) == (None, "high")
    view = await engine.view(iid)
    assert {s["task"]: s["due_at"] for s in view["steps"]}["check_documents"] is not None

    await people.complete("alice", account["id"])
    # Her branch goes on with a step for her again: it follows the one she completed.
    contract = await people.wait_task("alice", iid, "send_contract")
    assert contract["title"] == "Send Globex the contract"
    assert contract["follows"] == account["id"]
    await people.complete("alice", contract["id"])
    # One branch done: the join waits for the other, nothing new appears.
    await eventually(lambda: _step_status(engine, iid, contract["id"], "completed"))
    await asyncio.sleep(0.5)
    assert await people.running("alice") == []

    await people.complete("carol", docs["id"])
    joined = time.monotonic()
    view = await eventually(lambda: _waiting(engine, iid), what="the timer is waiting")
    assert view["waiting_timers"] == ["Reminder timer"]
    call = await people.wait_task("alice", iid, "welcome_call")
    assert time.monotonic() - joined >= 0.9  # PT1S
    assert call["title"] == "Reminder: welcome call with Globex"
    assert call["follows"] is None  # a timer made it, not alice's completion
    await people.complete("alice", call["id"])
    done = await people.wait_process(iid, "completed")
    assert len(done["steps"]) == 4


async def _step_status(engine: EngineHandle, iid: str, step_id: str, status: str) -> bool:
    view = await engine.view(iid)
    return any(s["id"] == step_id and s["status"] == status for s in view["steps"])


async def _waiting(engine: EngineHandle, iid: str) -> dict[str, Any] | None:
    view = await engine.view(iid)
    return view if view["waiting_timers"] else None


async def test_escalation_moves_the_step_to_the_managers_queue_then_drop_cancels(
    engine: EngineHandle, people: People, taskbell: Live
) -> None:
    started = datetime.now(UTC)
    iid = await engine.start("escalation", escalate_after="PT1S")
    handle = await people.wait_task("alice", iid, "handle_request")
    assert handle["title"] == "Handle the refund for order 1042"
    assert handle["owner"] == "alice"
    due = _when(handle["due_at"]) - started  # camunda:dueDate = the boundary timer's
    assert timedelta(seconds=1) <= due < timedelta(seconds=3)

    # Not done by its due date: the boundary timer cancels alice's step in Taskbell, and
    # the step moves to the managers' queue.
    review = await people.wait_task("carol", iid, "manager_review", timeout=10)
    assert (review["owner"], review["role"], review["priority"]) == (None, "managers", "urgent")
    assert [a["id"] for a in review["actions"]] == ["resolved", "drop"]
    assert review["actions"][1] == {
        "id": "drop",
        "label": "Drop the request",
        "comment": "optional",
    }
    assert "not handled by alice in time" in review["title"]
    assert review["follows"] is None
    gone = await people.task(handle["id"])
    assert gone["status"] == "canceled"
    assert await people.running("alice") == []
    assert await people.running("bob") == []  # not a manager
    # ... and a late completion of it is refused by Taskbell (it is final).
    late = await people.try_complete("alice", handle["id"])
    assert late.status_code == 409

    # A manager drops it from the page: a terminate end event, so the instance is canceled.
    answer = await submit_step(review["url"], {"resolution": "drop"})
    assert answer.status_code == 303
    ended = await people.wait_process(iid, "canceled")
    assert ended["duration_ms"] > 0
    assert (await people.task(review["id"]))["outcome"] == "drop"
    view = await eventually(lambda: _ended(engine, iid), what="engine ended")
    assert view["status"] == "canceled"
    assert view["end_reason"] == "terminate end event: Request dropped"


async def test_escalation_handled_in_time_completes(engine: EngineHandle, people: People) -> None:
    iid = await engine.start("escalation", escalate_after="PT30S")
    handle = await people.wait_task("alice", iid, "handle_request")
    await people.complete("alice", handle["id"])
    done = await people.wait_process(iid, "completed")
    assert [s["status"] for s in done["steps"]] == ["completed"]
    assert await people.running("carol") == []


async def test_a_manager_resolves_the_escalation(engine: EngineHandle, people: People) -> None:
    iid = await engine.start("escalation", escalate_after="PT0.5S")
    review = await people.wait_task("carol", iid, "manager_review")
    assert_error(await people.try_complete("carol", review["id"]), 422, "outcome_required")
    await people.complete("carol", review["id"], "resolved", "called the customer")
    await people.wait_process(iid, "completed")
    view = await eventually(lambda: _ended(engine, iid), what="engine ended")
    assert view["data"]["resolution"] == "resolved"
    assert view["data"]["comment"] == "called the customer"


async def test_the_record_comes_from_the_instance_data(
    engine: EngineHandle, people: People
) -> None:
    record = {"entity": "Invoice", "id": "inv-13", "title": "INV-13 from Acme"}
    iid = await engine.start("invoice_approval", invoice_id="INV-13", record=record)
    approve = await people.wait_task("bob", iid, "approve_invoice")
    assert approve["record"] == record
    # Without one (or with one that names no entity), the step has no record.
    bare = await engine.start("invoice_approval", record={"id": "x"})
    assert (await people.wait_task("bob", bare, "approve_invoice"))["record"] is None
