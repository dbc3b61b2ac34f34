"""Live counts in the panel: the Postponed tab's count and the overview's postponed tile
are the server's ``counts.postponed``, right without a reload whatever moves them (a task
created already postponed, one coming back by the clock, one canceled while postponed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Browsing
from tests.browser.panel import badge, item
from tests.browser.support import Producer

pytestmark = pytest.mark.browser


def _tab_count(page: Page) -> Locator:
    return page.locator("[data-role=postponed-count]")


def _tile(page: Page) -> Locator:
    return page.locator(".tile--postponed .tile__value")


def test_a_task_created_postponed_counts_at_once_and_moves_back_when_its_time_comes(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    page = browsing.open(user)
    expect(_tile(page)).to_have_text("0")
    expect(_tab_count(page)).to_have_text("")

    back_at = datetime.now(UTC) + timedelta(seconds=4)
    task = producer.create(user, "Call Initech back", postponed_until=back_at.isoformat())

    expect(_tab_count(page)).to_have_text("1")
    expect(_tile(page)).to_have_text("1")
    expect(badge(page)).to_have_count(0)
    expect(item(page, task["id"])).to_have_count(0)

    # The clock resumes it: it is running again, and nothing is postponed any more.
    expect(item(page, task["id"])).to_be_visible(timeout=15_000)
    expect(badge(page)).to_have_text("1")
    expect(_tab_count(page)).to_have_text("")
    expect(_tile(page)).to_have_text("0")


def test_canceling_a_postponed_task_lowers_the_postponed_count_live(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    first = producer.create(user, "Renew the Acme contract", postponed_until=later)
    producer.create(user, "Send the Initech invoice", postponed_until=later)
    page = browsing.open(user)
    expect(_tab_count(page)).to_have_text("2")

    producer.cancel(first["id"])

    expect(_tab_count(page)).to_have_text("1")
    expect(_tile(page)).to_have_text("1")
    page.get_by_test_id("tab-postponed").click()
    expect(page.get_by_test_id("postponed-list").locator("li")).to_have_count(1)
