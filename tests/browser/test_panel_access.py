"""Keyboard, small screens and zoom, desktop notifications, and how it looks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import DESKTOP, PHONE, Browsing
from tests.browser.panel import FAKE_NOTIFICATIONS, badge, item, items, settle, wait_for_js
from tests.browser.support import Producer

pytestmark = pytest.mark.browser


def focused_testid(page: Page) -> str | None:
    testid: str | None = page.evaluate("document.activeElement?.dataset.testid ?? null")
    return testid


def test_keyboard_only_completion_and_postponement(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    older = producer.create(user, "Postpone me from the keyboard")
    newer = producer.create(user, "Complete me from the keyboard")
    page = browsing.open(user)
    expect(items(page)).to_have_count(2)

    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to process tasks")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("task-list")).to_be_focused()
    page.keyboard.press("Tab")
    expect(item(page, newer["id"]).get_by_test_id("task-title")).to_be_focused()
    page.keyboard.press("Tab")
    expect(item(page, newer["id"]).get_by_test_id("task-record")).to_be_focused()
    page.keyboard.press("Tab")
    complete = item(page, newer["id"]).get_by_test_id("complete")
    expect(complete).to_be_focused()
    assert page.evaluate("document.activeElement.matches(':focus-visible')")

    page.keyboard.press("Enter")
    expect(item(page, newer["id"])).to_have_count(0)
    expect(badge(page)).to_have_text("1")
    # Focus moved to the same control of the next task, not to the top of the page.
    expect(item(page, older["id"]).get_by_test_id("complete")).to_be_focused()

    page.keyboard.press("Tab")
    expect(item(page, older["id"]).get_by_test_id("postpone")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("postpone-1h")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_test_id("postpone-tomorrow")).to_be_focused()
    page.keyboard.press("Enter")

    expect(items(page)).to_have_count(0)
    expect(badge(page)).to_have_count(0)
    assert producer.get(older["id"])["status"] == "postponed"
    assert producer.get(newer["id"])["status"] == "completed"


def test_escape_closes_the_postpone_menu_and_returns_focus(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    task = producer.create(user, "Leave me be")
    page = browsing.open(user)
    postpone = item(page, task["id"]).get_by_test_id("postpone")
    postpone.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("postpone-menu")).to_be_visible()
    expect(postpone).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("postpone-menu")).to_be_hidden()
    expect(postpone).to_be_focused()
    expect(postpone).to_have_attribute("aria-expanded", "false")
    assert producer.get(task["id"])["status"] == "running"


@pytest.mark.parametrize(
    ("viewport", "scale"),
    [(PHONE, 2.0), ({"width": 640, "height": 430}, 2.0)],
    ids=["phone-width", "200-percent-zoom"],
)
def test_readable_on_a_phone_and_at_200_percent_zoom(
    browsing: Browsing, producer: Producer, user: str, viewport: dict[str, int], scale: float
) -> None:
    """A 1280x860 window at 200 % zoom is a 640x430 CSS viewport at scale 2."""
    task = producer.create(user, "Approve invoice INV-1042 for Umbrella Corporation", kind="page")
    page = browsing.open(user, page=browsing.page(browsing.context(viewport=viewport, scale=scale)))

    bell = page.get_by_test_id("bell")
    expect(bell).to_be_visible()
    expect(badge(page)).to_have_text("1")
    card = item(page, task["id"])
    expect(card).to_be_visible()
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
    clipped = page.evaluate(
        """() => {
            const bar = document.querySelector('.topbar').getBoundingClientRect();
            return [...document.querySelectorAll('.topbar a, .topbar button, .topbar .conn')]
                .filter((el) => el.getClientRects().length)
                .filter((el) => { const r = el.getBoundingClientRect();
                                  return r.left < bar.left || r.right > bar.right; })
                .map((el) => el.textContent.trim());
        }"""
    )
    assert clipped == [], f"cut off at the edge: {clipped}"
    box = card.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= viewport["width"]

    card.get_by_role("button", name="Complete").click()
    expect(badge(page)).to_have_count(0)

    # The bell toggles the panel; the sections stay reachable from the strip.
    page.get_by_test_id("strip-activities").click()
    expect(page.get_by_role("heading", name="Activities")).to_be_visible()
    expect(bell).to_have_attribute("aria-expanded", "false")
    bell.click()
    expect(bell).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_text("You're all caught up")).to_be_visible()


def test_desktop_notification_is_asked_on_click_and_tagged_by_task_id(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    """The browser's Notification API and the tab's visibility are stand-ins here
    (headless Chromium shows no notifications and never hides a tab)."""
    page = browsing.page()
    page.add_init_script(FAKE_NOTIFICATIONS)
    browsing.open(user, page=page)
    assert page.evaluate("window.__notes.requested") == 0, "never asked on load"

    # Granting also registers this browser for Web Push (push.js asks the server first).
    with page.expect_request("**/api/v1/push/config"):
        page.get_by_test_id("notify-enable").click()
    expect(page.get_by_test_id("notify-on")).to_be_visible()
    assert page.evaluate("window.__notes.requested") == 1

    visible_task = producer.create(user, "Arrives while the tab is visible")
    expect(item(page, visible_task["id"])).to_be_visible()
    assert page.evaluate("window.__notes.shown.length") == 0

    page.evaluate("window.__hidden = true; document.dispatchEvent(new Event('visibilitychange'))")
    task = producer.create(user, "Arrives while the tab is hidden")
    wait_for_js(page, "window.__notes.shown.length === 1")
    assert page.evaluate("window.__notes.shown[0]") == {
        "title": "Arrives while the tab is hidden",
        "tag": task["id"],
    }

    producer.update(task["id"], title="Renamed while hidden")
    wait_for_js(page, "window.__notes.shown.length === 2")
    assert page.evaluate("window.__notes.shown[1].tag") == task["id"]

    producer.complete(task["id"])
    wait_for_js(page, f"window.__notes.closed.includes({task['id']!r})")


def test_screenshots_of_the_panel_with_several_tasks(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    samples = [
        ("activity", "Schedule the onboarding call with Dana Scully", "Customer onboarding",
         ("Contact", "dana-scully", "Dana Scully")),
        ("page", "Approve invoice INV-1042 (€12,400.00)", "Invoice approval",
         ("Invoice", "inv-1042", "INV-1042")),
        ("edit_record", "Fill in the billing details of Initech", "Customer onboarding",
         ("Account", "initech", "Initech")),
        ("email", "Send the signed proposal to Globex", "Opportunity management",
         ("Opportunity", "globex-expansion", "Globex expansion")),
        ("activity", "Call Acme Corp about the renewal", "Contract renewal",
         ("Account", "acme", "Acme Corp")),
    ]  # fmt: skip
    for kind, title, process, record in samples:
        producer.create(user, title, kind=kind, process=process, record=record)
    done = producer.create(user, "Check the credit limit of Umbrella", kind="page")
    producer.complete(done["id"])
    later = producer.create(user, "Prepare the quarterly review for Hooli", kind="email")
    producer.postpone(later["id"], datetime.now(UTC) + timedelta(days=1))

    shots = [
        ("panel-desktop.png", DESKTOP, 1.0, "light"),
        ("panel-desktop-dark.png", DESKTOP, 1.0, "dark"),
        ("panel-phone.png", PHONE, 2.0, "light"),
    ]
    for name, viewport, scale, scheme in shots:
        ctx = browsing.context(viewport=viewport, scale=scale, color_scheme=scheme)
        page = browsing.open(user, page=browsing.page(ctx))
        expect(items(page)).to_have_count(5)
        expect(badge(page)).to_have_text("5")
        expect(page.get_by_test_id("tab-postponed")).to_contain_text("1")
        settle(page)
        page.screenshot(path=str(output_dir / name))

    page = browsing.open(user, route="/activities")
    expect(page.get_by_test_id("activity-item")).to_have_count(7)
    settle(page)
    page.screenshot(path=str(output_dir / "activities-desktop.png"))
