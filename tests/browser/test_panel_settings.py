"""The settings view (``#/settings``, the gear in the top bar) in real Chromium: it shows
what the server keeps, saves channels, muted processes and quiet hours (the zone defaults
to the browser's), can be used from the keyboard alone, and refuses an empty window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import TIMEZONE, Browsing
from tests.browser.support import Person, Producer
from tests.browser.test_panel_languages import WORK, english_words, expect_no_english
from tests.browser.test_panel_languages import token as lang_token

pytestmark = pytest.mark.browser


def saved(person: Person) -> dict[str, Any]:
    body: dict[str, Any] = person.client.get("/me/preferences").raise_for_status().json()
    return body


def open_settings(page: Page) -> None:
    page.get_by_role("link", name="Notification settings").click()
    expect(page.get_by_role("heading", level=1, name="Notifications")).to_be_visible()
    expect(page.get_by_test_id("pref-save")).to_be_visible()


def test_settings_are_saved_to_the_server_and_read_back(
    browsing: Browsing, producer: Producer, person: Person, user: str, output_dir: Path
) -> None:
    producer.create(user, "Approve invoice INV-7", process="Invoice approval")
    producer.create(user, "Book the trip", process="Travel request")
    page = browsing.open(user)
    open_settings(page)
    expect(page).to_have_url(f"{browsing.base_url}/#/settings")
    form = page.get_by_test_id("settings-form")
    expect(form.get_by_label("Desktop notifications")).to_be_checked()
    expect(form.get_by_label("Invoice approval")).not_to_be_checked()
    expect(form.get_by_label("Travel request")).to_be_visible()
    expect(page.get_by_test_id("pref-zone")).to_have_value(TIMEZONE)  # the browser's zone
    expect(page.get_by_test_id("pref-start")).to_be_disabled()

    form.get_by_label("Push notifications").uncheck()
    form.get_by_label("Invoice approval").check()
    form.get_by_label("Keep quiet at night").check()
    page.get_by_test_id("pref-start").fill("22:30")
    page.get_by_test_id("pref-end").fill("06:45")
    page.get_by_test_id("pref-save").click()
    expect(page.get_by_test_id("settings-status")).to_have_text(
        "Saved. Your devices follow these settings from now on."
    )
    page.screenshot(path=str(output_dir / "settings.png"), full_page=True)
    assert saved(person) == {
        "channels": {"desktop": True, "push": False},
        "muted_processes": ["Invoice approval"],
        "quiet_hours": {"start": "22:30", "end": "06:45", "tz": TIMEZONE},
    }

    page.reload()
    expect(page.get_by_test_id("pref-save")).to_be_visible()
    expect(form.get_by_label("Push notifications")).not_to_be_checked()
    expect(form.get_by_label("Invoice approval")).to_be_checked()
    expect(page.get_by_test_id("pref-start")).to_have_value("22:30")
    expect(page.get_by_test_id("pref-end")).to_have_value("06:45")
    expect(page.get_by_test_id("pref-zone")).to_have_value(TIMEZONE)


def test_the_settings_view_works_from_the_keyboard(
    browsing: Browsing, person: Person, user: str
) -> None:
    page = browsing.open(user)
    gear = page.get_by_test_id("settings-link")
    gear.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("pref-save")).to_be_visible()
    expect(gear).to_have_attribute("aria-current", "page")
    page.get_by_test_id("pref-desktop").focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("pref-push")).to_be_focused()
    page.keyboard.press("Enter")  # Enter in a form submits it
    expect(page.get_by_test_id("settings-status")).to_have_text(
        "Saved. Your devices follow these settings from now on."
    )
    assert saved(person)["channels"] == {"desktop": False, "push": True}


def test_an_empty_quiet_window_is_not_saved(browsing: Browsing, person: Person, user: str) -> None:
    page = browsing.open(user, route="/settings")
    expect(page.get_by_test_id("pref-save")).to_be_visible()
    page.get_by_test_id("pref-quiet").check()
    page.get_by_test_id("pref-start").fill("07:00")
    page.get_by_test_id("pref-end").fill("07:00")
    page.get_by_test_id("pref-save").click()
    expect(page.get_by_test_id("settings-status")).to_have_text(
        "Quiet hours need a start and an end that differ."
    )
    assert saved(person)["quiet_hours"] is None


@pytest.mark.parametrize(
    ("language", "heading"), [("de", "Benachrichtigungen"), ("fr", "Notifications")]
)
def test_the_settings_view_speaks_the_tokens_language(
    browsing: Browsing, producer: Producer, user: str, language: str, heading: str, output_dir: Path
) -> None:
    process, title = str(WORK[language]["process"]), str(WORK[language]["own"])
    producer.create(user, title, process=process)
    page = browsing.page()
    page.goto(f"{browsing.base_url}/#token={lang_token(user, language)}&route=/settings")
    expect(page.get_by_role("heading", level=1, name=heading)).to_be_visible()
    page.get_by_test_id("pref-quiet").check()
    expect(page.get_by_test_id("settings-form").get_by_label(process)).to_be_visible()
    # The zone list holds IANA names (place names, not the panel's words): left out here.
    page.get_by_test_id("pref-zone").evaluate("(el) => { el.hidden = true; }")
    expect_no_english(page, english_words(page, language), language, [user, process])
    page.get_by_test_id("pref-zone").evaluate("(el) => { el.hidden = false; }")
    page.screenshot(path=str(output_dir / f"settings-{language}.png"), full_page=True)
