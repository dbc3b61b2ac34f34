"""The three sample processes end to end: a real engine, a real Taskbell, real signed
webhooks on loopback; people complete their steps through Taskbell's API with their own
tokens (or through the engine's step page), and the next step appears by itself."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.engine.support import EngineHandle, People, eventually, submit_step
from tests.support.app import Live


async def test_invoice_approved_end_to_end(engine: EngineHandle, people: People) -> None:
    iid = await engine.start("invoice_approval", invoice_id="INV-9", approver="bob")
    approve = await people.wait_task("bob", iid, "approve_invoice")
    assert approve["id"] == f"{iid}.approve_invoice.1"
    assert approve["title"] == "Approve invoice INV-9 (1,250.00 EUR)"
    assert approve["kind"] == "page"
    assert approve["process"] == {"instance_id": iid, "name": "Invoice approval"}
    assert approve["url"].startswith(engine.base_url + f"/steps/{approve['id']}?sig=")
    # The step's page is a real page.
    async with httpx.AsyncClient(trust_env=False) as c:
        page = await c.get(approve["url"])
        forged = await c.get(approve["url"].split("?")[0] + "?sig=" + "0" * 32)
        elsewhere = await c.get(f"{engine.base_url}/steps/{iid}.tell_approved.1?sig=x")
        odd = await c.get(approve["url"].split("?")[0] + "?sig=%C3%A9")
    assert page.status_code == 200 and "Approve invoice INV-9" in page.text
    assert 'value="reject"' in page.text
    # The link is the key: without its signature, no page.
    assert (forged.status_code, elsewhere.status_code, odd.status_code) == (404, 404, 404)

    await people.complete("bob", approve["id"])
    told = await people.wait_task("alice", iid, "tell_approved")
    assert told["title"] == "Invoice INV-9 approved by bob"
    await people.complete("alice", told["id"])

    done = await people.wait_process(iid, "completed")
    assert [(s["id"], s["status"]) for s in done["steps"]] == [
        (approve["id"], "completed"),
        (told["id"], "completed"),
    ]
    assert done["duration_ms"] > 0
    view = await eventually(lambda: _ended(engine, iid), what="engine ended")
    assert view["status"] == "completed"
    assert view["data"]["decision"] == "approve"
    assert view["data"]["payment_scheduled"] is True  # the script task ran
    assert view["data"]["completed_by"] == "alice" and view["data"]["actor"] == "alice"
    assert [s["completed_by"] for s in view["steps"]] == ["bob", "alice"]
    assert await people.running("bob") == [] and await people.running("alice") == []


async def _ended(engine: EngineHandle, iid: str) -> dict[str, Any] | None:
    view = await engine.view(iid)
    return view if view["status"] != "running" and view["pending_calls"] == 0 else None


async def test_invoice_reject_needs_a_comment_and_tells_the_requester(
    engine: EngineHandle, people: People
) -> None:
    iid = await engine.start("invoice_approval", invoice_id="INV-10")
    approve = await people.wait_task("bob", iid, "approve_invoice")
    # The page refuses a reject without a comment, and completes nothing.
    refused = await submit_step(approve["url"], {"decision": "reject", "comment": ""})
    assert refused.status_code == 422 and "Required: Comment" in refused.text
    # bob saves his decision on the page, then completes from his panel (his token).
    saved = await submit_step(
        approve["url"], {"decision": "reject", "comment": "not our order"}, action="save"
    )
    assert saved.status_code == 200
    assert len(await people.running("bob")) == 1
    await people.complete("bob", approve["id"])

    told = await people.wait_task("alice", iid, "tell_rejected")
    assert told["title"] == "Invoice INV-10 rejected by bob: not our order"
    # The approve branch did not run.
    view = await engine.view(iid)
    assert "payment_scheduled" not in view["data"]
    # alice finishes from the engine's page (the Complete button): Taskbell completes it
    # for the producer, and the engine records her as the one who completed it.
    answer = await submit_step(told["url"], {})
    assert answer.status_code == 303
    await people.wait_process(iid, "completed")
    view = await eventually(lambda: _ended(engine, iid), what="engine ended")
    assert view["data"]["decision"] == "reject"
    assert view["steps"][1]["completed_by"] == "alice"
    assert view["data"]["actor"] is None  # the producer (the engine's page) completed it


async def test_onboarding_parallel_steps_then_a_timer(engine: EngineHandle, people: People) -> None:
    iid = await engine.start("customer_onboarding", customer="Globex", reminder_after="PT1S")
    docs, account = await asyncio.gather(
        people.wait_task("carol", iid, "check_documents"),
        people.wait_task("alice", iid, "set_up_account"),
    )
    assert docs["title"] == "Check Globex's documents" and docs["kind"] == "edit_record"
    assert account["title"] == "Set up Globex's account"

    await people.complete("alice", account["id"])
    # One branch done: the join waits for the other, nothing new appears.
    await eventually(lambda: _step_status(engine, iid, account["id"], "completed"))
    await asyncio.sleep(0.5)
    assert await people.running("alice") == []

    await people.complete("carol", docs["id"])
    joined = time.monotonic()
    view = await eventually(lambda: _waiting(engine, iid), what="the timer is waiting")
    assert view["waiting_timers"] == ["Reminder timer"]
    call = await people.wait_task("alice", iid, "welcome_call")
    assert time.monotonic() - joined >= 0.9  # PT1S
    assert call["title"] == "Reminder: welcome call with Globex"
    await people.complete("alice", call["id"])
    done = await people.wait_process(iid, "completed")
    assert len(done["steps"]) == 3


async def _step_status(engine: EngineHandle, iid: str, step_id: str, status: str) -> bool:
    view = await engine.view(iid)
    return any(s["id"] == step_id and s["status"] == status for s in view["steps"])


async def _waiting(engine: EngineHandle, iid: str) -> dict[str, Any] | None:
    view = await engine.view(iid)
    return view if view["waiting_timers"] else None


async def test_escalation_moves_the_step_to_the_manager_then_drop_cancels(
    engine: EngineHandle, people: People, taskbell: Live
) -> None:
    iid = await engine.start("escalation", escalate_after="PT1S")
    handle = await people.wait_task("alice", iid, "handle_request")
    assert handle["title"] == "Handle the refund for order 1042"
    view = await engine.view(iid)
    assert view["steps"][0]["due_at"] is not None  # camunda:dueDate

    # Not done in time: the boundary timer cancels alice's step in Taskbell ...
    review = await people.wait_task("carol", iid, "manager_review", timeout=10)
    assert "not handled by alice in time" in review["title"]
    async with people.producer() as c:
        gone = (await c.get(f"/api/v1/tasks/{handle['id']}")).json()
    assert gone["status"] == "canceled"
    assert await people.running("alice") == []
    # ... and a late completion of it is refused by Taskbell (it is final).
    async with people.person("alice") as c:
        late = await c.post(f"/api/v1/tasks/{handle['id']}/complete")
    assert late.status_code == 409

    # The manager drops it: a terminate end event, so the instance is canceled.
    answer = await submit_step(review["url"], {"resolution": "drop"})
    assert answer.status_code == 303
    ended = await people.wait_process(iid, "canceled")
    assert ended["duration_ms"] > 0
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
