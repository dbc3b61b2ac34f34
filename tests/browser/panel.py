"""Locators for the panel page, by the ``data-testid`` attributes the page promises."""

from __future__ import annotations

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


def settle(page: Page) -> None:
    """Wait until no CSS or Web Animation is running (for screenshots and DOM reads)."""
    page.wait_for_function(
        "() => document.getAnimations().filter((a) => a.playState === 'running'"
        " && isFinite(a.effect?.getComputedTiming().endTime ?? 0)).length === 0"
    )
