"""Polish found in screenshots: a refused token, toasts, the phone's strip and top bar,
compact cards, and two tabs that agree."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from server.auth import mint_token
from tests.browser.conftest import Browsing
from tests.browser.support import SECRET
from tests.support.server_proc import ServerProcess

pytestmark = pytest.mark.browser


def expect_refused(page: Page, heading: str) -> None:
    """A whole page about the token, and nothing of a panel that would never fill."""
    refused = page.get_by_test_id("token-refused")
    expect(refused).to_be_visible()
    expect(refused.get_by_role("heading", level=1)).to_have_text(heading)
    expect(page.locator("#app")).to_be_hidden()
    expect(page.get_by_text("Good ", exact=False)).to_be_hidden()
    expect(page.get_by_text("Connecting…")).to_be_hidden()


def test_a_token_the_server_refuses_shows_a_finished_page(
    browsing: Browsing, user: str, output_dir: Path
) -> None:
    """Well formed, but signed with another secret: only the server can tell."""
    page = browsing.page()
    page.goto(f"{browsing.base_url}/#token={mint_token('another-secret-' * 4, user, 3600)}")
    expect_refused(page, "This sign-in link doesn't work")
    again = page.get_by_text("Open the communication panel again from your application")
    expect(again).to_be_visible()
    expect(page.get_by_test_id("pick-again")).to_have_count(0)
    page.screenshot(path=str(output_dir / "token-refused.png"))


def test_something_that_is_no_token_at_all_is_refused_at_once(browsing: Browsing) -> None:
    page = browsing.page()
    page.goto(f"{browsing.base_url}/#token=garbage")
    expect_refused(page, "This sign-in link doesn't work")


def test_an_expired_token_says_the_session_has_ended(browsing: Browsing, user: str) -> None:
    page = browsing.page()
    stale = mint_token(SECRET, user, 60, now=time.time() - 3600)
    page.goto(f"{browsing.base_url}/#token={stale}")
    expect_refused(page, "Your session has ended")


def test_in_demo_mode_a_refused_token_offers_to_pick_a_person_again(
    browsing: Browsing, make_server: Callable[..., ServerProcess], output_dir: Path
) -> None:
    srv = make_server(TASKBELL_DEMO="1", TASKBELL_SECRET="", TASKBELL_PRODUCER_KEYS="")
    page = browsing.page()
    # (A refused token that names a person is simply re-minted for them in demo mode.)
    page.goto(f"{srv.base_url}/#token=not-a-token")
    expect_refused(page, "This sign-in link doesn't work")
    page.screenshot(path=str(output_dir / "token-refused-demo.png"))

    page.get_by_test_id("pick-again").click()
    expect(page.get_by_role("heading", name="Who are you?")).to_be_visible()
    page.locator('[data-testid="who-user"][data-user="bob"]').click()
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("who")).to_have_text("bob")
