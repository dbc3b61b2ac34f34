"""The panel's own notifications (raised while its tab is hidden, web/js/notify.js)
follow the person's preferences like Web Push and the bridge do (web/js/quiet.js): the
push switch, muted processes, and quiet hours in the person's zone with urgent tasks
let through. The panel itself (cards, badge) always updates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Browsing
from tests.browser.panel import FAKE_NOTIFICATIONS, item
from tests.browser.support import Producer

pytestmark = pytest.mark.browser


def set_preferences(producer: Producer, user: str, **body: Any) -> None:
    producer.client.put(f"/users/{user}/preferences", json=body).raise_for_status()


# Counts the page's reads of its preferences: asked (the request sent) and read (its
# JSON parsed). The panel stores what it read in the same turn as the parse resolves,
# before any later message (a task's) is handled, so once read == asked, what arrives
# next is judged by the answer. (The response arriving is not enough: its body is
# parsed later, and a fast server's next event can come in between.)
COUNT_PREFERENCE_READS = """(() => {
  const reads = (window.__prefs = { asked: 0, read: 0 });
  const isPrefs = (url) => String(url).includes("/api/v1/me/preferences");
  const fetch = window.fetch;
  window.fetch = function (input, init) {
    if (isPrefs(input instanceof Request ? input.url : input)) reads.asked += 1;
    return fetch.call(this, input, init);
  };
  const json = Response.prototype.json;
  Response.prototype.json = async function () {
    const value = await json.call(this);
    if (isPrefs(this.url)) reads.read += 1;
    return value;
  };
})();"""


def hidden_panel(browsing: Browsing, user: str) -> Page:
    """The person's panel with notifications allowed, then its tab hidden (which reads
    the preferences again: the answer is awaited, so what follows is judged by them)."""
    page = browsing.page()
    page.add_init_script(FAKE_NOTIFICATIONS)
    page.add_init_script(COUNT_PREFERENCE_READS)
    browsing.open(user, page=page)
    page.get_by_test_id("notify-enable").click()
    expect(page.get_by_test_id("notify-on")).to_be_visible()
    hide(page)
    return page


def hide(page: Page) -> None:
    """Hide the tab and wait until the panel has read and stored its preferences."""
    asked = page.evaluate("window.__prefs.asked")
    page.evaluate("window.__hidden = true; document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_function(
        "(n) => window.__prefs.asked > n && window.__prefs.read >= window.__prefs.asked",
        arg=asked,
    )


def show(page: Page) -> None:
    page.evaluate("window.__hidden = false; document.dispatchEvent(new Event('visibilitychange'))")


def arrives(page: Page, task: dict[str, Any]) -> list[str]:
    """Wait until the card of ``task`` is in the panel (the notifier has judged it by
    then: the same message drives both); the titles raised so far."""
    expect(item(page, task["id"])).to_be_attached()
    titles: list[str] = page.evaluate("window.__notes.shown.map((n) => n.title)")
    return titles


def around_now(minutes: int = 60) -> tuple[str, str]:
    now = datetime.now(UTC)
    return (
        (now - timedelta(minutes=minutes)).strftime("%H:%M"),
        (now + timedelta(minutes=minutes)).strftime("%H:%M"),
    )


def test_quiet_hours_silence_the_panels_notifications_but_not_urgent_ones(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    start, end = around_now()
    set_preferences(producer, user, quiet_hours={"start": start, "end": end, "tz": "UTC"})
    page = hidden_panel(browsing, user)
    assert arrives(page, producer.create(user, "Can wait until morning")) == []
    urgent = producer.create(user, "The server room is flooding", priority="urgent")
    assert arrives(page, urgent) == ["The server room is flooding"]


def test_the_same_hours_in_another_zone_are_not_quiet_now(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    # The window around now on UTC's clock is half a day away on Kiritimati's (UTC+14).
    start, end = around_now()
    set_preferences(
        producer, user, quiet_hours={"start": start, "end": end, "tz": "Pacific/Kiritimati"}
    )
    page = hidden_panel(browsing, user)
    assert arrives(page, producer.create(user, "Rings on Kiritimati time")) == [
        "Rings on Kiritimati time"
    ]
    # Moved to UTC (read again when the tab is next hidden): quiet now.
    set_preferences(producer, user, quiet_hours={"start": start, "end": end, "tz": "UTC"})
    show(page)
    hide(page)
    assert arrives(page, producer.create(user, "Silent on UTC time")) == [
        "Rings on Kiritimati time"
    ]


def test_a_muted_process_and_the_push_switch_silence_the_panels_notifications(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    set_preferences(producer, user, muted_processes=["Travel request"])
    page = hidden_panel(browsing, user)
    muted = producer.create(user, "Book the trip", process="Travel request", priority="urgent")
    assert arrives(page, muted) == []  # a mute holds whatever the priority
    assert arrives(page, producer.create(user, "Approve invoice INV-9")) == [
        "Approve invoice INV-9"
    ]
    set_preferences(producer, user, channels={"desktop": True, "push": False})
    show(page)
    hide(page)
    assert arrives(page, producer.create(user, "Approve invoice INV-10")) == [
        "Approve invoice INV-9"
    ]
