""" "New since you last looked" in a real browser: cards that arrived since the person
last looked carry a "New" label (text, not only colour) until seen; the marks live on
the server, so a look on one device drops the labels on the others, and a fresh tab
labels exactly the cards that are still new."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import DESKTOP, PHONE, Browsing
from tests.browser.panel import item, settle
from tests.browser.support import Producer, user_token

pytestmark = pytest.mark.browser


def marks(base_url: str, user: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {user_token(user)}"}
    body: dict[str, Any] = httpx.get(f"{base_url}/api/v1/me/seen", headers=headers).json()
    return body


def new_mark(page: Page, task_id: str) -> Locator:
    return item(page, task_id).get_by_test_id("new-mark")


def phone_away_from_the_panel(browsing: Browsing, user: str) -> Page:
    """A phone showing the Activities page: the panel is closed, so nothing is seen."""
    page = browsing.page(browsing.context(viewport=PHONE))
    browsing.open(user, page=page, route="/activities")
    expect(page.get_by_test_id("panel")).to_be_hidden()
    return page


def test_arrivals_are_new_until_seen_and_a_look_elsewhere_drops_them(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    first = producer.create(user, "Approve invoice INV-7")
    second = producer.create(user, "Call Acme back", kind="email")
    phone = phone_away_from_the_panel(browsing, user)
    warnings: list[str] = []
    phone.on("console", lambda msg: warnings.append(msg.text) if msg.type == "warning" else None)
    for task in (first, second):
        expect(new_mark(phone, task["id"])).to_have_text("New")
    assert marks(browsing.base_url, user)["feeds"] == {f"user:{user}": 0}, "not seen yet"

    # The person looks on the desktop (the panel is docked there): both are seen now,
    # and the desktop keeps their labels while the person goes on looking.
    desk = browsing.page(browsing.context(viewport=DESKTOP))
    browsing.open(user, page=desk)
    for task in (first, second):
        expect(new_mark(desk, task["id"])).to_be_visible()
    expect(new_mark(desk, first["id"])).to_have_text("New")
    settle(desk)
    desk.screenshot(path=str(output_dir / "seen-new-marks-desktop.png"))
    # ... and the phone drops its labels when the server says so.
    for task in (first, second):
        expect(new_mark(phone, task["id"])).to_have_count(0)
    assert marks(browsing.base_url, user)["feeds"] == {f"user:{user}": 2}
    # (by the seen message on the open connection: not by reconnecting after refusing it)
    assert not [w for w in warnings if "bad frame" in w], warnings

    # Something arrives while the phone is away from the panel: new there.
    third = producer.create(user, "Send the reminder")
    expect(new_mark(phone, third["id"])).to_have_text("New")
    expect(new_mark(phone, first["id"])).to_have_count(0)

    # A fresh tab (another device) labels just what is still new; the desktop saw it.
    expect(new_mark(desk, third["id"])).to_be_visible()
    fresh = phone_away_from_the_panel(browsing, user)
    expect(item(fresh, first["id"])).to_have_count(1)
    expect(new_mark(fresh, first["id"])).to_have_count(0)
    expect(new_mark(fresh, second["id"])).to_have_count(0)


def test_a_fresh_tab_labels_the_cards_the_server_says_are_new(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    old = producer.create(user, "Seen already")
    headers = {"Authorization": f"Bearer {user_token(user)}"}
    seen = httpx.put(
        f"{browsing.base_url}/api/v1/me/seen",
        json={"feeds": {f"user:{user}": 1}},
        headers=headers,
    )
    assert seen.status_code == 200, seen.text
    fresh = producer.create(user, "Arrived since")
    page = phone_away_from_the_panel(browsing, user)
    expect(new_mark(page, fresh["id"])).to_have_text("New")
    expect(new_mark(page, old["id"])).to_have_count(0)

    # Opening the panel by keyboard is looking at it: the mark moves on the server, and
    # the label stays while the panel is open, then goes when it closes.
    page.get_by_test_id("bell").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("panel")).to_be_visible()
    expect(new_mark(page, fresh["id"])).to_be_visible()
    settle(page)
    page.screenshot(path=str(output_dir / "seen-new-marks-phone.png"))
    deadline = 50
    while marks(browsing.base_url, user)["feeds"][f"user:{user}"] != 2 and deadline:
        page.wait_for_timeout(100)
        deadline -= 1
    assert marks(browsing.base_url, user) == {"feeds": {f"user:{user}": 2}, "new": []}
    page.get_by_test_id("bell").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("panel")).to_be_hidden()
    expect(new_mark(page, fresh["id"])).to_have_count(0)


def test_the_label_is_in_the_persons_language(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    task = producer.create(user, "Rechnung freigeben")
    ctx = browsing.browser.new_context(locale="de-DE", viewport=PHONE)  # type: ignore[arg-type]
    browsing.contexts.append(ctx)
    page = browsing.page(ctx)
    browsing.open(user, page=page, route="/activities")
    expect(new_mark(page, task["id"])).to_have_text("Neu")
