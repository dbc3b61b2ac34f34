"""The panel as a work surface, against the real server in real Chromium: decisions from
the card (with a comment when the action asks, an undo window, the server's refusal),
what needs attention first (overdue, priority, due), and the next step of a process
offered (or opened) the moment it arrives."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Locator, Page, Route, expect

from tests.browser.conftest import PHONE, TIMEZONE, Browsing
from tests.browser.panel import item, items, settle, shown_ids, wait_for_js
from tests.browser.support import APPROVE_REJECT, Person, Producer

pytestmark = pytest.mark.browser

CRM = "https://crm.example/pages/"
BERLIN = ZoneInfo(TIMEZONE)


def clock(at: datetime) -> str:
    """A time as the page shows it (en-US, the browser's zone): "02:00 PM"."""
    return at.astimezone(BERLIN).strftime("%I:%M %p")


def shown_at(at: datetime, now: datetime) -> str:
    """A moment as the page writes it at ``now`` (web/js/time.js ``absolute``): the time
    on the same day in the browser's zone, else with the date, and the year when it is
    another year's: "02:00 PM", "Wed, Dec 2, 12:29 AM", "Jan 1, 2027, 12:29 AM"."""
    local, today = at.astimezone(BERLIN), now.astimezone(BERLIN)
    if local.date() == today.date():
        return clock(at)
    if local.year != today.year:
        return f"{local:%b} {local.day}, {local.year}, {clock(at)}"
    return f"{local:%a, %b} {local.day}, {clock(at)}"


def decide_button(card: Locator, label: str) -> Locator:
    """The card's decision button ``label`` (not the comment form's button of that name)."""
    return card.get_by_test_id("decide").and_(card.get_by_role("button", name=label, exact=True))


def stub_crm(page: Page) -> None:
    """The engine's pages, answered in the browser (the test network has no crm.example)."""
    page.context.route(
        f"{CRM}**",
        lambda route: route.fulfill(
            status=200, content_type="text/html", body="<title>Step</title><h1>Step</h1>"
        ),
    )


def press_tab_until(page: Page, target: Locator, limit: int = 12) -> None:
    """Keyboard only: Tab until ``target`` has focus."""
    for _ in range(limit):
        if target.evaluate("(el) => el === document.activeElement"):
            return
        page.keyboard.press("Tab")
    expect(target).to_be_focused()


# ---------------------------------------------------------------- decisions


def test_a_decision_is_sent_after_the_undo_window_with_its_outcome(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    task = producer.create(user, "Approve invoice INV-7", actions=APPROVE_REJECT)
    page = browsing.open(user)
    card = item(page, task["id"])
    expect(decide_button(card, "Approve")).to_be_visible()
    expect(decide_button(card, "Reject")).to_be_visible()
    expect(card.get_by_role("button", name="Complete")).to_have_count(0)
    expect(card.get_by_role("button", name="Postpone")).to_be_visible()
    settle(page)
    page.screenshot(path=str(output_dir / "work-decisions.png"))

    decide_button(card, "Approve").click()
    expect(card.get_by_test_id("pending-text")).to_have_text("Approved — Approve invoice INV-7")
    expect(card.get_by_role("button", name="Undo")).to_be_focused()
    page.screenshot(path=str(output_dir / "work-undo.png"))
    page.wait_for_timeout(2500)
    assert producer.get(task["id"])["status"] == "running", "sent before the undo window ended"

    expect(items(page)).to_have_count(0, timeout=8000)
    done = producer.get(task["id"])
    assert (done["status"], done["outcome"], done["completed_by"]) == ("completed", "approve", user)


def test_undo_restores_the_card_and_sends_nothing(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    task = producer.create(user, "Approve the travel costs", actions=APPROVE_REJECT)
    page = browsing.open(user)
    card = item(page, task["id"])
    decide_button(card, "Approve").click()
    card.get_by_role("button", name="Undo").click()
    expect(card.get_by_test_id("pending")).to_have_count(0)
    expect(decide_button(card, "Approve")).to_be_visible()
    expect(decide_button(card, "Approve")).to_be_focused()
    page.wait_for_timeout(6000)
    assert producer.get(task["id"])["status"] == "running"
    expect(items(page)).to_have_count(1)


def test_a_step_the_process_cancels_in_the_undo_window_is_not_sent(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    task = producer.create(user, "Approve the budget", actions=APPROVE_REJECT)
    page = browsing.open(user)
    decide_button(item(page, task["id"]), "Approve").click()
    producer.cancel(task["id"])
    expect(items(page)).to_have_count(0)
    page.wait_for_timeout(6000)
    expect(page.get_by_test_id("toast").filter(has_text="Couldn't")).to_have_count(0)
    done = producer.get(task["id"])
    assert (done["status"], done["outcome"]) == ("canceled", None)


def test_a_required_comment_is_asked_for_and_everything_works_by_keyboard(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    task = producer.create(user, "Approve invoice INV-9", actions=APPROVE_REJECT)
    page = browsing.open(user)
    card = item(page, task["id"])
    reject = decide_button(card, "Reject")
    expect(reject).to_have_attribute("aria-haspopup", "dialog")
    card.get_by_test_id("task-title").focus()
    press_tab_until(page, reject)
    page.keyboard.press("Enter")

    form = card.get_by_role("form", name="Reject: Approve invoice INV-9")
    box = form.get_by_role("textbox", name="Comment (required)")
    expect(box).to_be_focused()
    expect(reject).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Tab")
    expect(form.get_by_role("button", name="Reject")).to_be_focused()
    page.keyboard.press("Enter")  # blank: refused in the page
    expect(form.get_by_test_id("decide-error")).to_be_visible()
    expect(box).to_be_focused()
    expect(box).to_have_attribute("aria-invalid", "true")
    settle(page)
    page.screenshot(path=str(output_dir / "work-comment-required.png"))

    page.keyboard.press("Escape")
    expect(form).to_have_count(0)
    expect(reject).to_be_focused()
    expect(reject).to_have_attribute("aria-expanded", "false")

    page.keyboard.press("Space")
    expect(box).to_be_focused()
    page.keyboard.type("The amount does not match the order")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(card.get_by_test_id("pending-text")).to_have_text("Rejected — Approve invoice INV-9")
    expect(card.get_by_role("button", name="Undo")).to_be_focused()
    expect(items(page)).to_have_count(0, timeout=8000)
    done = producer.get(task["id"])
    assert (done["outcome"], done["comment"]) == ("reject", "The amount does not match the order")
    page.evaluate("() => { window.location.hash = '#/activities'; }")
    row = page.locator(f'[data-testid="activity-item"][data-task-id="{task["id"]}"]')
    expect(row.get_by_test_id("status")).to_have_text("Completed: Reject")
    expect(row.get_by_test_id("status")).to_have_attribute(
        "title", "The amount does not match the order"
    )
    settle(page)
    page.screenshot(path=str(output_dir / "work-activities-outcome.png"))


def test_an_optional_comment_may_stay_empty(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    actions = [{"id": "done", "label": "Send back", "comment": "optional"}]
    task = producer.create(user, "Review the offer", actions=actions)
    page = browsing.open(user)
    card = item(page, task["id"])
    decide_button(card, "Send back").click()
    box = card.get_by_role("textbox", name="Comment (optional)")
    expect(box).to_be_focused()
    card.get_by_test_id("decide-submit").click()
    expect(card.get_by_test_id("pending-text")).to_have_text("Done: Send back — Review the offer")
    expect(items(page)).to_have_count(0, timeout=8000)
    done = producer.get(task["id"])
    assert (done["outcome"], done["comment"]) == ("done", None)


def test_a_refused_decision_is_an_error_toast_and_the_card_comes_back(
    browsing: Browsing, producer: Producer, person: Person, user: str, output_dir: Path
) -> None:
    """The page never sends a blank required comment, so the request is crafted on its way:
    the comment is taken out and the server answers 422 ``comment_required``."""
    task = producer.create(user, "Approve invoice INV-11", actions=APPROVE_REJECT)
    for body, code in [
        ({"outcome": "reject"}, "comment_required"),
        ({"outcome": "reject", "comment": "   "}, "comment_required"),
        ({}, "outcome_required"),
        ({"outcome": "maybe"}, "unknown_outcome"),
    ]:
        refused = person.complete(task["id"], body)
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, code), body
    page = browsing.open(user)

    def strip_comment(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body.pop("comment", None)
        route.continue_(post_data=json.dumps(body))

    page.route("**/api/v1/tasks/*/complete", strip_comment)
    card = item(page, task["id"])
    decide_button(card, "Reject").click()
    card.get_by_role("textbox", name="Comment (required)").fill("Wrong amount")
    card.get_by_test_id("decide-submit").click()
    toast = page.get_by_test_id("toast").filter(has_text="Couldn't reject")
    expect(toast).to_be_visible(timeout=9000)
    expect(toast).to_have_attribute("role", "alert")
    expect(toast).to_contain_text("Approve invoice INV-11")
    expect(card.get_by_test_id("pending")).to_have_count(0)
    expect(decide_button(card, "Reject")).to_be_visible()
    settle(page)
    page.screenshot(path=str(output_dir / "work-refused.png"))
    assert producer.get(task["id"])["status"] == "running"


def test_queue_cards_keep_claim_and_stand_in_cards_show_decisions(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    role = f"approvers-{uuid.uuid4().hex[:6]}"
    absent = f"{user}-away"
    producer.set_members(role, [user])
    producer.create_for_role(role, "Approve invoice INV-12", work={"actions": APPROVE_REJECT})
    theirs = producer.create(absent, "Approve invoice INV-13", actions=APPROVE_REJECT)
    producer.substitute(absent, user)
    page = browsing.open(user)
    queued = page.get_by_test_id("queue-item")
    expect(queued.get_by_role("button", name="Claim")).to_be_visible()
    expect(queued.get_by_test_id("decide")).to_have_count(0)
    standin = page.get_by_test_id("standin-item")
    decide_button(standin, "Approve").click()
    expect(page.get_by_test_id("standin-item")).to_have_count(0, timeout=8000)
    done = producer.get(theirs["id"])
    assert (done["outcome"], done["completed_by"], done["acted_by"]) == ("approve", user, user)


def test_decision_buttons_fit_the_phone_layout(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    producer.create(user, "Approve invoice INV-14 for Initech Ltd.", actions=APPROVE_REJECT)
    page = browsing.open(user, page=browsing.page(browsing.context(viewport=PHONE)))
    card = items(page).first
    expect(decide_button(card, "Approve")).to_be_visible()
    settle(page)
    for button in (
        decide_button(card, "Approve"),
        decide_button(card, "Reject"),
        card.get_by_role("button", name="Postpone"),
    ):
        box = button.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert box["height"] >= 36, "too small to tap"
    page.screenshot(path=str(output_dir / "work-decisions-phone.png"))
    decide_button(card, "Reject").click()
    expect(card.get_by_role("textbox", name="Comment (required)")).to_be_in_viewport()
    settle(page)
    page.screenshot(path=str(output_dir / "work-comment-phone.png"))


# ---------------------------------------------------------------- attention


def test_cards_are_sorted_by_attention_and_marked_with_words(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    now = datetime.now(UTC)
    low = producer.create(user, "Tidy the contact list", priority="low")
    later = producer.create(user, "Send the contract", due_at=now + timedelta(days=2))
    plain = producer.create(user, "Call Acme about the renewal")
    soon = producer.create(user, "Check the delivery note", due_at=now + timedelta(hours=2))
    high = producer.create(user, "Review the offer for Globex", priority="high")
    urgent = producer.create(user, "Approve the payment run", priority="urgent")
    lapsing = producer.create(
        user, "Confirm the order of Initech", due_at=now + timedelta(seconds=8)
    )
    page = browsing.open(user)
    expect(items(page)).to_have_count(7)
    ids = [urgent["id"], high["id"], lapsing["id"], soon["id"], later["id"], plain["id"], low["id"]]
    assert shown_ids(page) == ids

    urgent_card = item(page, urgent["id"])
    expect(urgent_card.get_by_test_id("flag-urgent")).to_have_text("Urgent")
    expect(urgent_card.locator(".flag--urgent svg")).to_have_count(1)
    expect(item(page, high["id"]).get_by_test_id("flag-high")).to_have_text("High priority")
    expect(item(page, plain["id"]).get_by_test_id("attention")).to_be_hidden()
    expect(item(page, soon["id"]).get_by_test_id("due")).to_have_text(
        f"Due in 2 h · {shown_at(now + timedelta(hours=2), now)}"
    )

    # The server's clock flags the lapsing one: a live task.updated re-sorts and re-marks it.
    lapsing_card = item(page, lapsing["id"])
    lapsing_card.get_by_role("button", name="Complete").focus()
    expect(lapsing_card.get_by_test_id("flag-overdue")).to_contain_text(
        "Overdue since", timeout=15_000
    )
    expect(lapsing_card).to_have_attribute("data-overdue", "true")
    expect(lapsing_card.get_by_test_id("due")).to_have_text(
        f"Overdue since {clock(now + timedelta(seconds=8))}"
    )
    wait_for_js(
        page,
        f"document.querySelector('#task-list [data-testid=task-item]')"
        f".dataset.taskId === {json.dumps(lapsing['id'])}",
    )
    assert producer.get(lapsing["id"])["overdue"] is True
    assert shown_ids(page)[:3] == [lapsing["id"], urgent["id"], high["id"]]
    expect(lapsing_card.get_by_role("button", name="Complete")).to_be_focused()
    settle(page)
    page.screenshot(path=str(output_dir / "work-attention.png"))


def test_a_due_time_in_another_year_shows_the_year(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    due = datetime(datetime.now(UTC).year + 1, 3, 14, 9, 30, tzinfo=UTC)
    task = producer.create(user, "Renew the maintenance contract", due_at=due)
    page = browsing.open(user)
    text = item(page, task["id"]).get_by_test_id("due")
    expect(text).to_contain_text(f"Mar 14, {due.year}")
    expect(text).to_contain_text(clock(due))
    expect(text).to_contain_text("Due in ")


def test_postponed_cards_say_when_they_come_back(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    task = producer.create(user, "Call Initech back")
    back = datetime.now(UTC) + timedelta(days=1)
    producer.postpone(task["id"], back)
    page = browsing.open(user)
    page.get_by_test_id("tab-postponed").click()
    card = page.locator(f'#postponed-list [data-task-id="{task["id"]}"]')
    expect(card.locator(".card__time")).to_have_text(f"Back tomorrow {clock(back)}")


# ---------------------------------------------------------------- the next step


def test_the_next_step_is_offered_when_it_follows_a_step_completed_here(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    first = producer.create(
        user, "Check the invoice", instance=producer.start_process(), actions=APPROVE_REJECT
    )
    page = browsing.open(user)
    decide_button(item(page, first["id"]), "Approve").click()
    expect(items(page)).to_have_count(0, timeout=8000)
    nxt = producer.next_step(first, user, "Send the contract")
    toast = page.get_by_test_id("toast").filter(has_text="Next: Send the contract")
    expect(toast).to_be_visible()
    expect(toast.get_by_role("button", name="Open")).to_be_visible()
    settle(page)
    page.screenshot(path=str(output_dir / "work-next-step.png"))
    stub_crm(page)
    toast.get_by_role("button", name="Open").click()
    page.wait_for_url(nxt["url"])


def test_a_step_that_follows_one_completed_elsewhere_is_not_offered(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    first = producer.create(user, "Check the invoice", instance=producer.start_process())
    page = browsing.open(user)
    expect(items(page)).to_have_count(1)
    producer.complete(first["id"])
    expect(items(page)).to_have_count(0)
    nxt = producer.next_step(first, user, "Send the contract")
    expect(item(page, nxt["id"])).to_be_visible()
    page.wait_for_timeout(500)
    expect(page.get_by_test_id("toast").filter(has_text="Next:")).to_have_count(0)


def test_the_next_step_opens_directly_when_the_finished_one_was_opened_here(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    role = f"onboarding-{uuid.uuid4().hex[:6]}"
    producer.set_members(role, [user])
    first = producer.create(
        user, "Collect the documents", process="Onboarding", instance=producer.start_process()
    )
    page = browsing.open(user)
    stub_crm(page)
    with page.context.expect_page() as opened:
        item(page, first["id"]).get_by_test_id("task-title").click(modifiers=["Control"])
    opened.value.close()
    item(page, first["id"]).get_by_role("button", name="Complete").click()
    expect(items(page)).to_have_count(0)
    # The next step is offered to a queue the person is in: it opens all the same.
    nxt = producer.create_for_role(
        role,
        "Send the welcome pack",
        process="Onboarding",
        instance=first["process"]["instance_id"],
        work={"follows": first["id"]},
    )
    page.wait_for_url(nxt["url"])


def test_the_hand_off_window_is_ten_seconds(browsing: Browsing, user: str) -> None:
    page = browsing.open(user)
    verdicts = page.evaluate(
        """async () => {
          const { handoffFor } = await import('/static/js/handoff.js');
          const done = new Map([['a', { at: 1000, opened: false }],
                                ['b', { at: 1000, opened: true }]]);
          const t = (follows, url = 'https://crm.example/x') => ({ follows, url });
          return [handoffFor(t('a'), done, 11000), handoffFor(t('a'), done, 11001),
                  handoffFor(t('b'), done, 5000), handoffFor(t('b', null), done, 5000),
                  handoffFor(t(null), done, 5000), handoffFor(t('c'), done, 5000)];
        }"""
    )
    assert verdicts == ["offer", None, "open", "offer", None, None]
