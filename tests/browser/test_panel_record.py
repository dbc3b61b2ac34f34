"""The record view's Process button ("move down the process")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Browsing
from tests.browser.support import Producer

pytestmark = pytest.mark.browser

CRM = "https://crm.example/pages/"


def serve_crm_pages(page: Page) -> None:
    """The host application's task pages, answered inside the browser (no network)."""

    def fulfil(route: Route) -> None:
        route.fulfill(content_type="text/html", body="<title>CRM task page</title><h1>CRM</h1>")

    page.route(CRM + "**", fulfil)


def test_process_opens_the_only_open_step_of_the_record(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    record = ("Account", "acc-one", "Acme Corp")
    task = producer.create(user, "Call Acme about the renewal", record=record)
    producer.create(user, "A step of another record", record=("Account", "acc-two", "Globex"))
    page = browsing.page()
    serve_crm_pages(page)
    browsing.open(user, page=page, route="/records/Account/acc-one")

    expect(page.get_by_test_id("record-title")).to_have_text("Acme Corp")
    button = page.get_by_test_id("process-button")
    expect(button).to_have_attribute("data-count", "1")
    button.click()

    expect(page).to_have_url(task["url"])
    expect(page).to_have_title("CRM task page")


def test_process_offers_a_chooser_when_the_record_has_several_steps(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    """Running and postponed steps are both offered; choosing a postponed one resumes it
    and opens its page."""
    record = ("Opportunity", "opp-9", "Globex expansion")
    running = producer.create(user, "Send the proposal", kind="email", record=record)
    waiting = producer.create(user, "Approve the discount", kind="page", record=record)
    producer.postpone(waiting["id"], datetime.now(UTC) + timedelta(days=1))
    page = browsing.page()
    serve_crm_pages(page)
    browsing.open(user, page=page, route="/records/Opportunity/opp-9")

    button = page.get_by_test_id("process-button")
    expect(button).to_have_attribute("data-count", "2")
    button.click()

    chooser = page.get_by_test_id("process-chooser")
    expect(chooser).to_be_visible()
    expect(chooser.get_by_role("heading")).to_have_text("Move down the process")
    choices = chooser.get_by_test_id("process-choice")
    expect(choices).to_have_count(2)
    expect(chooser.locator(f'[data-task-id="{running["id"]}"]')).to_contain_text("Running")
    postponed_choice = chooser.locator(f'[data-task-id="{waiting["id"]}"]')
    expect(postponed_choice).to_contain_text("Postponed")
    expect(choices.first).to_be_focused()

    postponed_choice.click()

    expect(page).to_have_url(waiting["url"])
    assert producer.get(waiting["id"])["status"] == "running"


def test_a_record_without_open_steps_says_so(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    page = browsing.open(user, route="/records/Account/nothing-here")
    expect(page.get_by_test_id("record-summary")).to_have_text(
        "No process is waiting on this record."
    )
    expect(page.get_by_test_id("process-button")).to_have_attribute("aria-disabled", "true")
