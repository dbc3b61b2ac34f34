"""The real BPMN engine drives the panel, end to end in real Chromium: ``python -m server``
in demo mode and ``python -m engine --bpmn engine/samples`` beside it, each a child
process, talking through the producer API and real signed webhooks on loopback.

What a newcomer does after ``bash scripts/run``: press Start sample process, an approver
claims the invoice approval from the ``approvers`` queue and decides it on the card (a
reject needs a comment), and the requester's panel shows what the process does next.
And the hand-off: an onboarding step followed by another step for the same person is
offered at once ("Next: … Open"), or opened directly when the finished step was opened
from the panel."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Browsing
from tests.browser.panel import item, items, settle
from tests.engine.support import EngineProcess, engine_config
from tests.support.processes import free_port
from tests.support.server_proc import ServerProcess

pytestmark = pytest.mark.browser

# Taskbell as scripts/run starts it in demo mode (made-up secret and producer key), with
# quick webhook retries, and loopback receivers allowed (the engine is on 127.0.0.1).
DEMO_ENV = {
    "TASKBELL_DEMO": "1",
    "TASKBELL_SECRET": "",
    "TASKBELL_PRODUCER_KEYS": "",
    "TASKBELL_WEBHOOK_ALLOW_PRIVATE": "1",
    "TASKBELL_OUTBOX_POLL_SECONDS": "0.05",
    "TASKBELL_OUTBOX_LEASE_SECONDS": "2",
    "TASKBELL_WEBHOOK_RETRY_SECONDS": "0.1",
    "TASKBELL_WEBHOOK_RETRY_CAP_SECONDS": "0.5",
}
DEMO_PRODUCER_KEY = "demo-producer-key"


@dataclass
class Stack:
    """Taskbell and the engine, as ``bash scripts/run`` starts them."""

    taskbell: ServerProcess
    engine: EngineProcess

    @property
    def engine_url(self) -> str:
        return self.engine.config.public

    def start(self, process: str, **data: Any) -> str:
        """``POST /instances`` on the engine, as a host application would."""
        resp = httpx.post(
            f"{self.engine_url}/instances",
            json={"process": process, "data": data},
            trust_env=False,
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        instance_id: str = resp.json()["id"]
        return instance_id

    def view(self, instance_id: str) -> dict[str, Any]:
        resp = httpx.get(f"{self.engine_url}/instances/{instance_id}", trust_env=False, timeout=10)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def wait_ended(self, instance_id: str, status: str = "completed") -> dict[str, Any]:
        """The engine's view once the instance ended and Taskbell took every call."""
        found: dict[str, Any] = {}

        def ended() -> bool:
            found.update(self.view(instance_id))
            return bool(found["status"] != "running" and found["pending_calls"] == 0)

        poll(ended, f"{instance_id} ended")
        assert found["status"] == status, found
        return found

    def taskbell_process(self, instance_id: str) -> dict[str, Any]:
        resp = httpx.get(
            f"{self.taskbell.base_url}/api/v1/processes/{instance_id}",
            headers={"Authorization": f"Bearer {DEMO_PRODUCER_KEY}"},
            trust_env=False,
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body


@pytest.fixture
def stack(make_server: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[Stack]:
    engine_port = free_port()
    taskbell = make_server(TASKBELL_ENGINE_URL=f"http://127.0.0.1:{engine_port}", **DEMO_ENV)
    config = replace(
        engine_config(taskbell.base_url, tmp_path / "engine.db", port=engine_port),
        producer_key=DEMO_PRODUCER_KEY,
    )
    with EngineProcess(config) as engine:
        poll(
            lambda: "registered webhook endpoint" in engine.log_text(),
            "the engine registered its webhook endpoint",
        )
        yield Stack(taskbell, engine)


def poll(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout}s: {what}")
        time.sleep(0.05)


def demo_panel(browsing: Browsing, stack: Stack, who: str, beside: Page | None = None) -> Page:
    """The panel in demo mode as ``who`` (the person picker): in a browser of its own, or
    in another tab of ``beside``'s."""
    page = browsing.page(beside.context if beside is not None else None)
    page.goto(stack.taskbell.base_url + "/")
    page.locator(f'[data-testid="who-user"][data-user="{who}"]').click()
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("who")).to_have_text(who)
    return page


def queue(page: Page, role: str) -> Locator:
    return page.locator(f'[data-testid="feed-section"][data-feed="role:{role}"]')


def decide_button(card: Locator, label: str) -> Locator:
    """The card's decision button ``label`` (not the comment form's button of that name)."""
    return card.get_by_test_id("decide").and_(card.get_by_role("button", name=label, exact=True))


def by_title(page: Page, title: str) -> Locator:
    return items(page).filter(has=page.get_by_test_id("task-title").filter(has_text=title))


def step_url(stack: Stack, instance_id: str, spec: str) -> re.Pattern[str]:
    """The engine's page of the instance's first ``spec`` step (any signature)."""
    return re.compile(re.escape(f"{stack.engine_url}/steps/{instance_id}.{spec}.1?sig=") + ".+")


def claim_approval(bob: Page) -> Locator:
    """bob takes the invoice approval from the approvers' queue: his own card, with the
    decision buttons of the BPMN form's enum field."""
    queued = queue(bob, "approvers").get_by_test_id("queue-item")
    expect(queued).to_have_count(1)
    expect(queued.get_by_test_id("task-title")).to_have_text("Approve invoice INV-7 (1,250.00 EUR)")
    queued.get_by_role("button", name="Claim").click()
    expect(queue(bob, "approvers").get_by_test_id("queue-item")).to_have_count(0)
    card = by_title(bob, "Approve invoice INV-7")
    expect(card).to_have_count(1)
    expect(decide_button(card, "Approve")).to_be_visible()
    expect(decide_button(card, "Reject")).to_be_visible()
    return card


def test_start_sample_process_then_an_approver_approves_and_the_requester_is_told(
    browsing: Browsing, stack: Stack, output_dir: Path
) -> None:
    # As the README's walkthrough: alice (the sample's requester) in one tab, bob (an
    # approver) in a second tab of the same browser.
    alice = demo_panel(browsing, stack, "alice")
    bob = demo_panel(browsing, stack, "bob", beside=alice)
    # The demo card says what the button starts: the engine's invoice approval.
    expect(alice.locator(".demo-card")).to_contain_text("Invoice approval")
    alice.get_by_test_id("demo-start").click()
    expect(alice.get_by_test_id("toast").filter(has_text="Sample process started")).to_be_visible()
    # The approval waits in the approvers' queue, for every member (demo mode puts the
    # demo users into the samples' queues).
    expect(queue(alice, "approvers").get_by_test_id("queue-item")).to_have_count(1)
    expect(queue(bob, "approvers").get_by_test_id("queue-item")).to_have_count(1)
    settle(bob)
    bob.screenshot(path=str(output_dir / "engine-approval-queued.png"))
    iid = queue(bob, "approvers").get_by_test_id("queue-item").get_attribute("data-task-id")
    assert iid is not None and iid.startswith("invoice_approval-")
    iid = iid.split(".")[0]

    card = claim_approval(bob)
    expect(queue(alice, "approvers").get_by_test_id("queue-item")).to_have_count(0)
    settle(bob)
    bob.screenshot(path=str(output_dir / "engine-approval-claimed.png"))
    decide_button(card, "Approve").click()
    # The BPMN form has a comment field: an approval may carry one (it stays empty).
    form = card.get_by_role("form", name="Approve: Approve invoice INV-7 (1,250.00 EUR)")
    expect(form.get_by_role("textbox", name="Comment (optional)")).to_be_focused()
    form.get_by_role("button", name="Approve").click()
    expect(card.get_by_test_id("pending-text")).to_have_text(
        "Approved — Approve invoice INV-7 (1,250.00 EUR)"
    )
    # After the undo window the decision goes to Taskbell, the webhook to the engine,
    # which runs the gateway and the script task and gives the requester her step.
    expect(items(bob)).to_have_count(0, timeout=20_000)
    told = by_title(alice, "Invoice INV-7 approved")
    expect(told).to_have_count(1, timeout=20_000)
    expect(told.get_by_test_id("task-title")).to_have_attribute(
        "href", step_url(stack, iid, "tell_approved")
    )
    # Not a hand-off: alice did not complete the approval.
    expect(alice.get_by_test_id("toast").filter(has_text="Next:")).to_have_count(0)
    settle(alice)
    alice.screenshot(path=str(output_dir / "engine-approved-requester.png"))

    told.get_by_role("button", name="Complete").click()
    expect(items(alice)).to_have_count(0)
    view = stack.wait_ended(iid)
    assert view["data"]["decision"] == "approve" and view["data"]["payment_scheduled"] is True
    assert [(s["task"], s["completed_by"]) for s in view["steps"]] == [
        ("approve_invoice", "bob"),
        ("tell_approved", "alice"),
    ]
    assert stack.taskbell_process(iid)["status"] == "completed"


def test_a_reject_on_the_card_needs_a_comment_and_the_requester_reads_it(
    browsing: Browsing, stack: Stack, output_dir: Path
) -> None:
    alice = demo_panel(browsing, stack, "alice")
    bob = demo_panel(browsing, stack, "bob")
    bob.get_by_test_id("demo-start").click()
    card = claim_approval(bob)

    decide_button(card, "Reject").click()
    form = card.get_by_role("form", name="Reject: Approve invoice INV-7 (1,250.00 EUR)")
    box = form.get_by_role("textbox", name="Comment (required)")
    expect(box).to_be_focused()
    form.get_by_role("button", name="Reject").click()
    expect(form.get_by_test_id("decide-error")).to_be_visible()
    settle(bob)
    bob.screenshot(path=str(output_dir / "engine-reject-comment.png"))
    box.fill("Wrong amount")
    form.get_by_role("button", name="Reject").click()
    expect(card.get_by_test_id("pending-text")).to_have_text(
        "Rejected — Approve invoice INV-7 (1,250.00 EUR)"
    )
    told = by_title(alice, "Invoice INV-7 rejected: Wrong amount")
    expect(told).to_have_count(1, timeout=20_000)
    settle(alice)
    alice.screenshot(path=str(output_dir / "engine-rejected-requester.png"))
    iid = (told.get_attribute("data-task-id") or "").split(".")[0]
    data = stack.view(iid)["data"]
    assert (data["decision"], data["comment"], data["completed_by"]) == (
        "reject",
        "Wrong amount",
        "bob",
    )
    told.get_by_role("button", name="Complete").click()
    view = stack.wait_ended(iid)
    assert "payment_scheduled" not in view["data"]  # the approve branch did not run


def test_a_requester_who_approves_herself_is_offered_her_next_step(
    browsing: Browsing, stack: Stack
) -> None:
    """alice (an approver too, in demo mode) takes her own invoice from the queue and
    approves it: "Invoice INV-7 approved" is hers, and follows the step she just did."""
    alice = demo_panel(browsing, stack, "alice")
    alice.get_by_test_id("demo-start").click()
    card = claim_approval(alice)
    decide_button(card, "Approve").click()
    card.get_by_test_id("decide-submit").click()
    toast = alice.get_by_test_id("toast").filter(has_text="Next: Invoice INV-7 approved")
    expect(toast).to_be_visible(timeout=20_000)
    expect(toast.get_by_role("button", name="Open")).to_be_visible()


def test_the_next_onboarding_step_is_offered_at_once(
    browsing: Browsing, stack: Stack, output_dir: Path
) -> None:
    iid = stack.start("customer_onboarding", customer="Globex", reminder_after="PT1H")
    alice = demo_panel(browsing, stack, "alice")  # the account manager
    account = by_title(alice, "Set up Globex's account")
    expect(account).to_have_count(1)
    account.get_by_role("button", name="Complete").click()
    toast = alice.get_by_test_id("toast").filter(has_text="Next: Send Globex the contract")
    expect(toast).to_be_visible(timeout=20_000)
    expect(by_title(alice, "Send Globex the contract")).to_have_count(1)
    settle(alice)
    alice.screenshot(path=str(output_dir / "engine-next-step-offered.png"))
    toast.get_by_role("button", name="Open").click()
    alice.wait_for_url(step_url(stack, iid, "send_contract"))
    expect(alice.get_by_role("heading", name="Send Globex the contract")).to_be_visible()


def test_an_onboarding_step_opened_from_the_panel_opens_the_next_directly(
    browsing: Browsing, stack: Stack, output_dir: Path
) -> None:
    """alice opens her step's page from the panel, comes back and completes it: the next
    step (hers too) opens by itself. She works the process through to its end: carol
    checks the documents, the timer gives alice the welcome call."""
    iid = stack.start("customer_onboarding", customer="Globex", reminder_after="PT1S")
    alice = demo_panel(browsing, stack, "alice")
    carol = demo_panel(browsing, stack, "carol")  # compliance
    account = by_title(alice, "Set up Globex's account")
    expect(account).to_have_count(1)
    with alice.context.expect_page() as opened:
        account.get_by_test_id("task-title").click(modifiers=["Control"])
    step_page = opened.value
    step_page.wait_for_url(step_url(stack, iid, "set_up_account"))
    expect(step_page.get_by_role("heading", name="Set up Globex's account")).to_be_visible()
    step_page.screenshot(path=str(output_dir / "engine-step-page.png"))
    step_page.close()

    account.get_by_role("button", name="Complete").click()
    alice.wait_for_url(step_url(stack, iid, "send_contract"), timeout=20_000)
    expect(alice.get_by_role("heading", name="Send Globex the contract")).to_be_visible()
    expect(alice.get_by_text("None", exact=True)).to_have_count(0)  # no empty data shown
    alice.screenshot(path=str(output_dir / "engine-next-step-opened.png"))
    # She finishes it on the engine's page.
    alice.get_by_role("button", name="Complete").click()
    expect(alice.get_by_text("Completed: the process moves on.")).to_be_visible()

    docs = by_title(carol, "Check Globex's documents")
    expect(docs).to_have_count(1)
    docs.get_by_role("button", name="Complete").click()
    expect(items(carol)).to_have_count(0)

    alice.go_back()
    alice.go_back()
    expect(alice.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    call = by_title(alice, "Reminder: welcome call with Globex")
    expect(call).to_have_count(1, timeout=20_000)
    expect(items(alice)).to_have_count(1)
    settle(alice)
    alice.screenshot(path=str(output_dir / "engine-onboarding-last-step.png"))
    call.get_by_role("button", name="Complete").click()
    expect(items(alice)).to_have_count(0)

    view = stack.wait_ended(iid)
    assert [(s["task"], s["completed_by"], s["follows"]) for s in view["steps"]] == [
        ("check_documents", "carol", None),
        ("set_up_account", "alice", None),
        ("send_contract", "alice", f"{iid}.set_up_account.1"),
        ("welcome_call", "alice", None),
    ]
    ended = stack.taskbell_process(iid)
    assert ended["status"] == "completed" and len(ended["steps"]) == 4
    assert item(alice, f"{iid}.welcome_call.1").count() == 0
