"""Locators for the panel page, by the ``data-testid`` attributes the page promises."""

from __future__ import annotations

import time

from playwright.sync_api import Locator, Page


def items(page: Page) -> Locator:
    """The process tasks shown in the panel (not the ones folding away)."""
    return page.get_by_test_id("task-list").get_by_test_id("task-item")


def item(page: Page, task_id: str) -> Locator:
    return page.get_by_test_id("task-list").locator(
        f'[data-testid="task-item"][data-task-id="{task_id}"]'
    )


def badge(page: Page) -> Locator:
    return page.get_by_test_id("bell").get_by_test_id("badge")


def shown_ids(page: Page) -> list[str]:
    ids: list[str] = page.evaluate(
        """() => [...document.querySelectorAll(
            '#task-list [data-testid="task-item"]')].map((el) => el.dataset.taskId)"""
    )
    return ids


def wait_for_js(page: Page, expression: str, timeout: float = 10.0) -> None:
    """Wait until ``expression`` is truthy in the page.

    Not ``page.wait_for_function``: that evaluates its string with ``eval`` inside the
    page, which the panel's Content-Security-Policy (no 'unsafe-eval') rightly forbids.
    ``page.evaluate`` runs through the DevTools protocol, outside the page's policy.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s: {expression}")
        page.wait_for_timeout(25)


def settle(page: Page) -> None:
    """Wait until no CSS or Web Animation is running (for screenshots and DOM reads)."""
    wait_for_js(
        page,
        "document.getAnimations().filter((a) => a.playState === 'running'"
        " && isFinite(a.effect?.getComputedTiming().endTime ?? 0)).length === 0",
    )


# The browser's Notification API and the tab's visibility as stand-ins (headless Chromium
# shows no notifications and never hides a tab): ``window.__notes`` logs what the panel
# raised and closed, ``window.__hidden`` is the tab's visibility.
FAKE_NOTIFICATIONS = """(() => {
          const log = (window.__notes = { requested: 0, shown: [], closed: [] });
          let permission = "default";
          class FakeNotification {
            static get permission() { return permission; }
            static async requestPermission() { log.requested += 1; permission = "granted";
                                               return permission; }
            constructor(title, options) { this.tag = options.tag;
                                          log.shown.push({ title, tag: options.tag }); }
            close() { log.closed.push(this.tag); }
          }
          window.Notification = FakeNotification;
          window.__hidden = false;
          Object.defineProperty(document, "visibilityState",
                                { get: () => (window.__hidden ? "hidden" : "visible") });
          Object.defineProperty(document, "hidden", { get: () => window.__hidden });
        })();"""
