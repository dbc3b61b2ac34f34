"""The process tasks tab, live: tasks appear, change and disappear as the producer and
the person act, and the badge is always the server's count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Route, expect

from tests.browser.conftest import TIMEZONE, Browsing
from tests.browser.panel import badge, item, items
from tests.browser.support import Person, Producer
from tests.support.server_proc import ServerProcess

pytestmark = pytest.mark.browser


def test_a_task_created_by_the_producer_appears_with_badge_1(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    page = browsing.open(user)
    expect(badge(page)).to_have_count(0)
    expect(page.get_by_test_id("bell")).to_have_accessible_name("Process tasks")
    expect(page.get_by_test_id("demo-start")).to_have_count(0)  # demo mode only

    task = producer.create(
        user,
        "Approve invoice INV-7",
        kind="page",
        process="Invoice approval",
        record=("Account", "acc-1", "Acme"),
    )

    card = item(page, task["id"])
    expect(card).to_be_visible()
    expect(badge(page)).to_have_text("1")
    expect(badge(page)).to_have_attribute("aria-label", "1 process task")
    expect(card.get_by_test_id("task-title")).to_have_text("Approve invoice INV-7")
    expect(card.get_by_test_id("task-title")).to_have_attribute("href", task["url"])
    expect(card).to_contain_text("Page")
    expect(card).to_contain_text("Invoice approval")
    expect(card.get_by_test_id("task-record")).to_have_attribute("href", "#/records/Account/acc-1")
    expect(card.locator("time")).to_have_text("just now")
    expect(page.get_by_test_id("announcer")).to_contain_text("New process task: Approve invoice")
    expect(page).to_have_title("(1) Taskbell")


def test_completing_from_the_panel_removes_it_and_the_badge(
    browsing: Browsing, producer: Producer, person: Person, user: str
) -> None:
    task = producer.create(user, "Call Acme about the renewal")
    page = browsing.open(user)
    expect(badge(page)).to_have_text("1")

    item(page, task["id"]).get_by_role("button", name="Complete").click()

    expect(items(page)).to_have_count(0)
    expect(badge(page)).to_have_count(0)
    expect(page.get_by_text("You're all caught up")).to_be_visible()
    assert producer.get(task["id"])["status"] == "completed"
    assert person.counter()[0] == 0


def test_postponing_removes_it_and_the_activities_view_lists_it_as_postponed(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    """Postponed to a date and time chosen in the person's own time zone, then found in
    Activities and resumed early."""
    task = producer.create(user, "Fill in the billing details of Initech", kind="edit_record")
    page = browsing.open(user)

    item(page, task["id"]).get_by_test_id("postpone").click()
    page.get_by_test_id("postpone-custom").click()
    zone = ZoneInfo(TIMEZONE)
    at = (datetime.now(zone) + timedelta(days=2)).replace(
        hour=10, minute=30, second=0, microsecond=0
    )
    page.get_by_test_id("postpone-at").fill(at.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_test_id("postpone-confirm").click()

    expect(items(page)).to_have_count(0)
    expect(badge(page)).to_have_count(0)
    stored = producer.get(task["id"])
    assert stored["status"] == "postponed"
    until = datetime.fromisoformat(stored["postponed_until"].replace("Z", "+00:00"))
    assert until == at.astimezone(UTC), "the chosen wall time is read in the person's zone"
    expect(page.get_by_test_id("toast")).to_contain_text("Postponed until")

    page.get_by_role("link", name="Activities").first.click()
    page.get_by_test_id("filter-postponed").click()
    expect(page).to_have_url(f"{browsing.base_url}/#/activities?status=postponed")
    row = page.get_by_test_id("activity-list").locator(f'[data-task-id="{task["id"]}"]')
    expect(row.get_by_test_id("status")).to_contain_text("Postponed until")
    expect(row.get_by_test_id("status")).to_contain_text("10:30")

    row.get_by_role("button", name="Resume now").click()
    expect(item(page, task["id"])).to_be_visible()
    expect(badge(page)).to_have_text("1")
    expect(row).to_have_count(0)
    assert producer.get(task["id"])["status"] == "running"


def test_the_activities_view_filters_by_status(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    running = producer.create(user, "Still to do")
    done = producer.create(user, "Done already")
    dropped = producer.create(user, "No longer needed")
    producer.complete(done["id"])
    producer.cancel(dropped["id"])
    page = browsing.open(user, route="/activities")

    rows = page.get_by_test_id("activity-list").get_by_test_id("activity-item")
    expect(rows).to_have_count(3)
    page.get_by_test_id("filter-completed").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-task-id", done["id"])
    expect(rows.first.get_by_test_id("status")).to_have_text("Completed")
    page.get_by_test_id("filter-canceled").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-task-id", dropped["id"])
    page.get_by_test_id("filter-running").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-task-id", running["id"])


def test_a_cancellation_by_the_producer_removes_it_live(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    keep = producer.create(user, "Send the proposal to Globex", kind="email")
    drop = producer.create(user, "Approve the discount", kind="page")
    page = browsing.open(user)
    expect(badge(page)).to_have_text("2")
    expect(badge(page)).to_have_attribute("aria-label", "2 process tasks")

    producer.cancel(drop["id"])

    expect(item(page, drop["id"])).to_have_count(0)
    expect(item(page, keep["id"])).to_be_visible()
    expect(badge(page)).to_have_text("1")
    expect(page.get_by_test_id("announcer")).to_contain_text(
        "Canceled by the process: Approve the discount"
    )


def test_an_update_changes_the_card_in_place(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    """Keyed DOM: the same element stays, only its text changes (nothing flickers)."""
    task = producer.create(user, "Call Acme")
    page = browsing.open(user)
    card = item(page, task["id"])
    expect(card).to_be_visible()
    card.evaluate("(el) => { el.dataset.marker = 'same-node'; }")

    producer.update(task["id"], title="Call Acme about the renewal")

    expect(card.get_by_test_id("task-title")).to_have_text("Call Acme about the renewal")
    expect(card).to_have_attribute("data-marker", "same-node")
    expect(badge(page)).to_have_text("1")


def test_the_token_leaves_the_address_bar_and_the_tab_keeps_it(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    producer.create(user, "Review the contract")
    page = browsing.open(user)
    assert "token" not in page.url
    assert page.url.endswith("/#/")

    page.reload()
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    expect(items(page)).to_have_count(1)
    expect(page.get_by_test_id("who")).to_have_text(user)


def test_without_a_token_the_page_says_the_host_application_must_open_it(
    browsing: Browsing, server: ServerProcess
) -> None:
    page = browsing.page()
    page.goto(server.base_url + "/")
    note = page.get_by_test_id("needs-token")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Open Taskbell from your application")
    expect(page.get_by_test_id("bell")).to_be_hidden()


def test_the_page_loads_nothing_from_anywhere_but_its_own_server(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    """No CDN, no web fonts: everything comes from the server (it works offline)."""
    ctx = browsing.context()
    elsewhere: list[str] = []

    def only_local(route: Route) -> None:
        url = route.request.url
        if url.startswith((browsing.base_url, "data:")):
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    ctx.route("**/*", only_local)
    seen: list[str] = []
    page = browsing.page(ctx)
    page.on("request", lambda request: seen.append(request.url))
    producer.create(user, "Works offline")
    browsing.open(user, page=page)
    expect(items(page)).to_have_count(1)
    assert elsewhere == []
    assert any(url.endswith("/static/panel.css") for url in seen)
    assert any(url.endswith("/static/js/wire.js") for url in seen)
