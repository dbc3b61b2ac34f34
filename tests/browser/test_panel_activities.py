"""The Activities view in a real browser: search, filters with counts, sort, titles that
lead somewhere whatever the status, and "Move down the process" from a selection, by
mouse and by keyboard, on a desktop and on a phone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import PHONE, Browsing
from tests.browser.panel import settle
from tests.browser.support import Producer
from tests.browser.test_panel_record import serve_crm_pages

pytestmark = pytest.mark.browser


def rows(page: Page) -> Locator:
    return page.get_by_test_id("activity-list").get_by_test_id("activity-item")


def row(page: Page, task_id: str) -> Locator:
    return page.get_by_test_id("activity-list").locator(f'[data-task-id="{task_id}"]')


def shown(page: Page) -> list[str]:
    ids: list[str] = page.evaluate(
        """() => [...document.querySelectorAll(
            '[data-testid="activity-list"] [data-testid="activity-item"]:not([data-leaving])'
        )].map((el) => el.dataset.taskId)"""
    )
    return ids


def history(producer: Producer, user: str) -> dict[str, dict[str, Any]]:
    """Five steps of every status, two processes, three records."""
    soon = datetime.now(UTC) + timedelta(days=2)
    t: dict[str, dict[str, Any]] = {}
    t["invoice"] = producer.create(user, "Approve invoice INV-7", priority="low", due_at=soon)
    t["call"] = producer.create(user, "Call Acme back", priority="urgent")
    t["contract"] = producer.create(
        user,
        "Check the contract terms",
        process="Contract review",
        record=("Contract", "c-9", "Globex frame agreement"),
        priority="high",
        due_at=soon - timedelta(days=1),
    )
    t["reminder"] = producer.create(user, "Send the reminder", kind="email")
    t["archive"] = producer.create(user, "Archive the old quote", record=None)
    t["later"] = producer.create(user, "Fill in the billing details", kind="edit_record")
    producer.complete(t["reminder"]["id"])
    producer.cancel(t["archive"]["id"])
    t["later"] = producer.postpone(t["later"]["id"], soon + timedelta(days=3))
    return t


def test_search_filters_with_counts_and_sort(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    t = history(producer, user)
    page = browsing.open(user, route="/activities")
    expect(rows(page)).to_have_count(6)
    counts = {f: page.get_by_test_id(f"filter-count-{f}") for f in ("all", "running", "postponed")}
    expect(counts["all"]).to_have_text("6")
    expect(counts["running"]).to_have_text("3")
    expect(counts["postponed"]).to_have_text("1")
    expect(page.get_by_test_id("filter-count-completed")).to_have_text("1")
    expect(page.get_by_test_id("filter-count-canceled")).to_have_text("1")

    # Search: the record's title, the process's name, the title, whatever the case.
    page.get_by_label("Search").fill("globex")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).first).to_have_attribute("data-task-id", t["contract"]["id"])
    expect(counts["all"]).to_have_text("1")
    expect(counts["postponed"]).to_have_text("0")
    expect(page).to_have_url(f"{browsing.base_url}/#/activities?q=globex")
    page.get_by_label("Search").fill("ACME")
    expect(rows(page)).to_have_count(4)  # three records "Acme" and "Call Acme back"
    page.get_by_test_id("filter-running").click()
    expect(rows(page)).to_have_count(2)
    expect(page).to_have_url(f"{browsing.base_url}/#/activities?status=running&q=ACME")

    page.get_by_label("Search").fill("")
    page.get_by_label("Sort").select_option("priority")
    expect(page).to_have_url(f"{browsing.base_url}/#/activities?status=running&sort=priority")
    expect(rows(page)).to_have_count(3)
    assert shown(page) == [t["call"]["id"], t["contract"]["id"], t["invoice"]["id"]]
    page.get_by_label("Sort").select_option("due")
    expect(rows(page).first).to_have_attribute("data-task-id", t["contract"]["id"])
    assert shown(page) == [t["contract"]["id"], t["invoice"]["id"], t["call"]["id"]]

    page.get_by_test_id("filter-all").click()
    page.get_by_label("Search").fill("no such thing anywhere")
    expect(page.get_by_text("Nothing matches “no such thing anywhere”")).to_be_visible()
    page.get_by_label("Search").fill("")
    expect(rows(page)).to_have_count(6)
    settle(page)
    page.screenshot(path=str(output_dir / "activities-search-filters.png"), full_page=True)

    # A fresh page with the choices in its address starts with them.
    route = quote("/activities?status=running&sort=priority&q=acme", safe="/")
    again = browsing.open(user, route=route)  # (encoded: the fragment is a query itself)
    expect(rows(again)).to_have_count(2)
    expect(again.get_by_label("Sort")).to_have_value("priority")
    expect(again.get_by_label("Search")).to_have_value("acme")


def test_a_postponed_card_says_when_it_comes_back(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    t = history(producer, user)
    page = browsing.open(user, route="/activities?status=postponed")
    card = row(page, t["later"]["id"])
    expect(card.get_by_test_id("status")).to_contain_text("Postponed until")
    expect(card.locator("time")).to_have_text(re.compile(r"^Back "))  # not "just now"
    back = datetime.fromisoformat(t["later"]["postponed_until"].replace("Z", "+00:00"))
    stamp = card.locator("time").get_attribute("datetime")
    assert stamp is not None
    shown_at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(shown_at - back) < timedelta(milliseconds=1), "not when it arrived"


def test_a_completed_title_opens_its_records_page(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    t = history(producer, user)
    page = browsing.open(user, route="/activities?status=completed")
    title = row(page, t["reminder"]["id"]).get_by_test_id("task-title")
    expect(title).to_have_attribute("href", f"/api/v1/tasks/{t['reminder']['id']}/open")
    title.click()
    # /tasks/{id}/open → the record's default page: the panel's record view
    expect(page).to_have_url(f"{browsing.base_url}/#/records/Account/acc-1")
    expect(page.get_by_test_id("record-title")).to_have_text("Acme")


def test_a_postponed_title_resumes_it_then_opens_its_page(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    t = history(producer, user)
    page = browsing.page()
    serve_crm_pages(page)
    browsing.open(user, page=page, route="/activities?status=postponed")
    row(page, t["later"]["id"]).get_by_test_id("task-title").click()
    expect(page).to_have_url(t["later"]["url"])
    assert producer.get(t["later"]["id"])["status"] == "running"


def test_move_down_the_process_from_a_selection_by_keyboard(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    t = history(producer, user)
    page = browsing.page()
    serve_crm_pages(page)
    browsing.open(user, page=page, route="/activities")
    move = page.get_by_test_id("move-down")
    expect(move).to_have_attribute("aria-disabled", "true")
    # Final steps cannot be moved on: no box to select them.
    expect(row(page, t["reminder"]["id"]).get_by_test_id("activity-select")).to_have_count(0)

    for key in ("call", "later"):
        box = row(page, t[key]["id"]).get_by_role("checkbox")
        box.focus()
        page.keyboard.press("Space")
        expect(box).to_be_checked()
    expect(page.get_by_test_id("selection-status")).to_have_text("2 steps selected.")
    expect(move).to_have_attribute("aria-disabled", "false")
    move.focus()
    page.keyboard.press("Enter")

    chooser = page.get_by_test_id("process-chooser")
    expect(chooser).to_be_visible()
    expect(chooser.get_by_test_id("process-choice")).to_have_count(2)
    expect(chooser.get_by_test_id("process-choice").first).to_be_focused()
    settle(page)
    page.screenshot(path=str(output_dir / "activities-move-down-chooser.png"))
    page.keyboard.press("Escape")
    expect(chooser).to_be_hidden()
    expect(move).to_be_focused()

    move.press("Enter")
    postponed = chooser.locator(f'[data-task-id="{t["later"]["id"]}"]')
    expect(postponed).to_contain_text("Postponed")
    postponed.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(t["later"]["url"])
    assert producer.get(t["later"]["id"])["status"] == "running"


def test_one_selected_step_opens_at_once(browsing: Browsing, producer: Producer, user: str) -> None:
    t = history(producer, user)
    page = browsing.page()
    serve_crm_pages(page)
    browsing.open(user, page=page, route="/activities?status=running")
    row(page, t["contract"]["id"]).get_by_role("checkbox").check()
    page.get_by_test_id("move-down").click()
    expect(page).to_have_url(t["contract"]["url"])


def test_the_activities_view_on_a_phone(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    t = history(producer, user)
    page = browsing.page(browsing.context(viewport=PHONE))
    browsing.open(user, page=page, route="/activities")
    expect(rows(page)).to_have_count(6)
    search = page.get_by_label("Search")
    expect(search).to_be_visible()
    box = search.bounding_box()
    assert box is not None and box["width"] > PHONE["width"] * 0.7, "the search fills the width"
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "nothing sticks out sideways"
    search.fill("billing")
    expect(rows(page)).to_have_count(1)
    chip = row(page, t["later"]["id"]).get_by_test_id("status").bounding_box()
    card = row(page, t["later"]["id"]).bounding_box()
    assert chip is not None and card is not None
    assert chip["x"] + chip["width"] <= card["x"] + card["width"], "the status chip is cut off"
    row(page, t["later"]["id"]).get_by_role("checkbox").check()
    expect(page.get_by_test_id("move-down")).to_be_in_viewport()
    settle(page)
    page.screenshot(path=str(output_dir / "activities-phone.png"), full_page=True)


def test_the_activities_view_speaks_german_and_french(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    history(producer, user)
    for locale, search, move in (
        ("de-DE", "Suchen", "Im Prozess weitergehen"),
        ("fr-FR", "Rechercher", "Avancer dans le processus"),
    ):
        ctx = browsing.browser.new_context(locale=locale, viewport={"width": 1366, "height": 860})
        browsing.contexts.append(ctx)
        page = browsing.page(ctx)
        browsing.open(user, page=page, route="/activities")
        expect(page.get_by_label(search)).to_be_visible()
        expect(page.get_by_test_id("move-down")).to_have_text(move)
        settle(page)
        page.screenshot(path=str(output_dir / f"activities-{locale}.png"))
