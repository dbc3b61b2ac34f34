"""Demo mode: pick who you are, start the sample process, watch tasks arrive."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Browsing
from tests.browser.panel import badge, items
from tests.support.server_proc import ServerProcess

pytestmark = pytest.mark.browser


def test_demo_pick_a_person_and_start_the_sample_process(
    browsing: Browsing, make_server: Callable[..., ServerProcess]
) -> None:
    srv = make_server(TASKBELL_DEMO="1", TASKBELL_SECRET="", TASKBELL_PRODUCER_KEYS="")
    page = browsing.page()
    page.goto(srv.base_url + "/")

    expect(page.get_by_role("heading", name="Who are you?")).to_be_visible()
    people = page.get_by_test_id("who-user")
    expect(people).to_have_count(3)
    page.locator('[data-testid="who-user"][data-user="alice"]').click()

    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("who")).to_have_text("alice")
    expect(badge(page)).to_have_count(0)

    page.get_by_test_id("demo-start").click()
    # Five steps spread over alice, bob and carol, one every 0.6 s: alice gets two.
    expect(badge(page)).to_have_text("2")
    expect(items(page)).to_have_count(2)
    expect(items(page).first.get_by_test_id("task-title")).to_have_attribute(
        "href", re.compile(r"^/demo/task/")
    )
    expect(page.get_by_test_id("toast")).to_contain_text("Sample process started")

    # A second tab picks someone else; the demo remembers who this browser was last.
    other = browsing.page(page.context)
    other.goto(srv.base_url + "/")
    expect(other.locator('[data-user="alice"]')).to_contain_text("last time")
    other.locator('[data-testid="who-user"][data-user="bob"]').click()
    expect(other.get_by_test_id("who")).to_have_text("bob")
    expect(badge(other)).to_have_text("2")
