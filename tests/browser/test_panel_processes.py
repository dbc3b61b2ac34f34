"""The process view (``#/processes``) in real Chromium against a real server whose
processes were made through the producer API: statistics drawn as charts with their
figures as tables, definitions switched off and on, instances filtered, opened onto their
steps and canceled after a confirmation; by keyboard alone, on a phone, and refused (with
no link to it) for a person without the process-admin right."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.sync_api import Locator, Page, expect

from server.auth import PROCESS_ADMIN, mint_token
from tests.browser.conftest import DESKTOP, PHONE, Browsing
from tests.browser.panel import settle
from tests.browser.support import SECRET, Person, Producer
from tests.support.server_proc import ServerProcess

pytestmark = pytest.mark.browser

ADMIN = "ada"
INVOICES = "Invoice approval"
ONBOARDING = "Onboarding"
NONE = "\u2013"  # what the page shows for a figure it does not have (an en dash)


@dataclass
class World:
    """A server of the test's own with known processes: in ``Invoice approval`` one
    completed instance (alice's and bob's steps), one running (alice's open step and one
    in the approvers' queue) and one canceled; in ``Onboarding`` one completed, one failed."""

    server: ServerProcess
    producer: Producer
    running: str = "inv-running"

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A producer call that must succeed; its JSON answer."""
        got = self.producer.client.request(method, path, json=body)
        assert got.is_success, f"{method} {path}: {got.status_code} {got.text}"
        return got.json()

    def task(self, tid: str, instance: str, name: str, owner: str | None = "alice") -> None:
        body = Producer.task_body(owner or "nobody", f"Step {tid}", task_id=tid, process=name)
        body["process"]["instance_id"] = instance
        if owner is None:
            body["owner"], body["role"] = None, "approvers"
        self.call("POST", "/tasks", body)

    def build(self) -> World:
        p = self.producer
        self.task("i1-a", "inv-done", INVOICES)
        self.task("i1-b", "inv-done", INVOICES, owner="bob")
        p.complete("i1-a")
        p.complete("i1-b")
        self.task("i2-a", self.running, INVOICES)
        self.task("i2-q", self.running, INVOICES, owner=None)
        self.task("i3-a", "inv-canceled", INVOICES)
        self.call("POST", "/tasks/i3-a/cancel")
        self.task("o1-a", "onb-done", ONBOARDING, owner="carol")
        p.complete("o1-a")
        self.call("POST", "/processes", {"id": "onb-failed", "name": ONBOARDING})
        self.call("POST", "/processes/onb-failed/fail")
        return self


@pytest.fixture
def world(make_server: Callable[..., ServerProcess]) -> Iterator[World]:
    """Asked for before ``browsing`` in every test, so that its server outlives the pages
    (they are closed, and checked for uncaught errors, before it stops)."""
    srv = make_server()
    with Producer(srv.base_url) as p:
        yield World(srv, p).build()


def admin_token(user: str = ADMIN) -> str:
    return mint_token(SECRET, user, 3600, roles=[PROCESS_ADMIN])


def open_view(browsing: Browsing, base_url: str, token: str, page: Page | None = None) -> Page:
    page = page or browsing.page()
    page.goto(f"{base_url}/#token={token}&route=/processes")
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    return page


def instance(page: Page, instance_id: str) -> Locator:
    return page.locator(f'[data-testid="proc-instance"][data-instance-id="{instance_id}"]')


def table_rows(table: Locator) -> list[list[str]]:
    rows: list[list[str]] = table.evaluate(
        """(t) => [...t.tBodies[0].rows].map((r) =>
            [...r.cells].map((c) => c.textContent.trim()))"""
    )
    return rows


def overflow(page: Page) -> int:
    """How many pixels the page, or any card or chart of the view, reaches past the
    screen's right edge (a scroll region of its own may be wider inside)."""
    wide: int = page.evaluate(
        """() => Math.max(0, document.scrollingElement.scrollWidth - innerWidth,
            ...[...document.querySelectorAll('.proc-item, .chart, .proc-section__head')]
                .map((el) => Math.ceil(el.getBoundingClientRect().right - innerWidth)))"""
    )
    return wide


def press_tab_until(page: Page, target: Locator, limit: int = 60) -> None:
    """Keyboard only: Tab until ``target`` has focus."""
    for _ in range(limit):
        if target.evaluate("(el) => el === document.activeElement"):
            return
        page.keyboard.press("Tab")
    expect(target).to_be_focused()


def test_an_admin_sees_charts_definitions_and_instances_with_their_steps(
    world: World, browsing: Browsing, output_dir: Path
) -> None:
    page = open_view(browsing, world.server.base_url, admin_token())
    nav = page.get_by_test_id("nav-processes")
    expect(nav).to_be_visible()
    expect(nav).to_have_text("Processes")
    expect(nav).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("heading", level=1)).to_have_text("Processes")

    counts = page.get_by_test_id("chart-counts")
    expect(counts).to_have_attribute("role", "img")
    expect(counts).to_have_accessible_name(
        "Instances by status Running: 1, Completed: 2, Canceled: 1, Failed: 1"
    )
    assert table_rows(page.get_by_test_id("chart-counts-table")) == [
        ["Running", "1"],
        ["Completed", "2"],
        ["Canceled", "1"],
        ["Failed", "1"],
    ]
    durations = page.get_by_test_id("chart-durations")
    expect(durations).to_have_accessible_name(
        re.compile(r"^Duration of completed instances Mean: .+, Median \(p50\): .+")
    )
    figures = table_rows(page.get_by_test_id("chart-durations-table"))
    assert [r[0] for r in figures] == ["Mean", "Median (p50)", "p95"]
    assert all(r[1] != NONE for r in figures), figures  # two completed instances
    expect(page.get_by_text("2 completed instances, started in: Last 30 days")).to_be_visible()
    per_process = table_rows(page.get_by_test_id("proc-stats-table"))
    assert [r[:5] for r in per_process] == [
        [INVOICES, "1", "1", "1", "0"],
        [ONBOARDING, "0", "1", "0", "1"],
    ]

    for name in (INVOICES, ONBOARDING):
        switch = page.get_by_test_id(f"proc-switch-{name}")
        expect(switch).to_have_attribute("aria-checked", "true")
        expect(switch).to_have_accessible_name(f"{name} accepts new instances")

    expect(page.get_by_test_id("proc-instance")).to_have_count(5)
    running = instance(page, world.running)
    expect(running).to_contain_text("2 of 2 steps open")
    expect(running).to_contain_text("With alice, queue approvers")
    expect(running.get_by_test_id("proc-cancel")).to_be_visible()
    expect(instance(page, "inv-done").get_by_test_id("proc-cancel")).to_have_count(0)

    done = instance(page, "inv-done")
    done.get_by_test_id("proc-steps-toggle").click()
    steps = done.get_by_test_id("proc-steps")
    expect(steps).to_be_visible()
    rows = table_rows(steps)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("Step i1-a", "alice", "Completed"),
        ("Step i1-b", "bob", "Completed"),
    ]
    assert all(r[5] != NONE for r in rows), rows  # each ended step has its duration
    page.get_by_test_id("chart-counts-table").locator("xpath=ancestor::details").locator(
        "summary"
    ).click()
    settle(page)
    # The view scrolls inside the page's main area: the screen as a person sees it, then
    # the whole view on a screen tall enough to hold it.
    page.screenshot(path=str(output_dir / "processes-desktop.png"))
    page.set_viewport_size({"width": DESKTOP["width"], "height": 2400})
    settle(page)
    page.screenshot(path=str(output_dir / "processes-desktop-whole.png"))


def test_keyboard_only_switch_filter_and_cancel_with_confirmation(
    world: World, browsing: Browsing, output_dir: Path
) -> None:
    page = open_view(browsing, world.server.base_url, admin_token())
    expect(page.get_by_test_id("proc-instance")).to_have_count(5)
    page.locator("#main").focus()

    # The period picker: a native select, changed with the arrow keys.
    period = page.get_by_test_id("proc-period")
    press_tab_until(page, period)
    page.keyboard.press("ArrowDown")
    expect(period).to_have_value("365d")
    expect(page.get_by_text("2 completed instances, started in: Last 12 months")).to_be_visible()
    assert "period=365d" in page.url

    switch = page.get_by_test_id(f"proc-switch-{INVOICES}")
    press_tab_until(page, switch)
    page.keyboard.press("Space")
    expect(switch).to_have_attribute("aria-checked", "false")
    expect(switch).to_contain_text("Disabled")
    refused = world.producer.client.post("/processes", json={"id": "new-1", "name": INVOICES})
    assert refused.status_code == 409, refused.text
    page.keyboard.press("Enter")
    expect(switch).to_have_attribute("aria-checked", "true")
    accepted = world.producer.client.post("/processes", json={"id": "new-1", "name": INVOICES})
    assert accepted.status_code == 201, accepted.text

    only_running = page.get_by_test_id("proc-filter-running")
    press_tab_until(page, only_running)
    page.keyboard.press("Enter")
    expect(only_running).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("proc-instance")).to_have_count(2)  # new-1 runs too
    expect(only_running).to_be_focused()

    running = instance(page, world.running)
    cancel = running.get_by_test_id("proc-cancel")
    press_tab_until(page, cancel)
    page.keyboard.press("Enter")
    dialog = page.get_by_test_id("proc-cancel-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("its 2 open steps are canceled")
    expect(page.get_by_test_id("proc-cancel-keep")).to_be_focused()
    settle(page)
    page.screenshot(path=str(output_dir / "processes-cancel-dialog.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(cancel).to_be_focused()
    assert world.call("GET", f"/processes/{world.running}")["status"] == "running"

    page.keyboard.press("Enter")
    expect(page.get_by_test_id("proc-cancel-keep")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("proc-cancel-confirm")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("toast")).to_contain_text(f"{world.running} canceled, with 2 open")
    expect(instance(page, world.running)).to_have_count(0)  # no longer running
    expect(page.get_by_test_id("proc-instances-title")).to_be_focused()  # not lost to <body>
    assert world.call("GET", f"/processes/{world.running}")["status"] == "canceled"
    alice = Person(world.server.base_url, "alice")
    try:
        assert "i2-a" not in alice.running_ids()
    finally:
        alice.close()


def test_the_view_on_a_phone(world: World, browsing: Browsing, output_dir: Path) -> None:
    page = open_view(
        browsing,
        world.server.base_url,
        admin_token(),
        browsing.page(browsing.context(viewport=PHONE, scale=2)),
    )
    link = page.get_by_test_id("strip-processes")
    expect(link).to_be_visible()
    expect(link).to_have_accessible_name("Processes")
    expect(page.get_by_test_id("chart-counts")).to_be_visible()
    expect(page.get_by_test_id("proc-instance")).to_have_count(5)
    settle(page)
    assert overflow(page) == 0, "the view is wider than the phone"
    page.screenshot(path=str(output_dir / "processes-phone.png"))
    done = instance(page, "inv-done")
    done.get_by_test_id("proc-steps-toggle").click()
    expect(done.get_by_test_id("proc-steps")).to_be_visible()
    done.scroll_into_view_if_needed()
    settle(page)
    # A wide steps table scrolls inside its own region; the cards stay on the screen.
    assert overflow(page) == 0, "the steps make the view wider than the phone"
    page.screenshot(path=str(output_dir / "processes-phone-steps.png"))
    running = instance(page, world.running)
    running.get_by_test_id("proc-cancel").click()
    expect(page.get_by_test_id("proc-cancel-dialog")).to_be_visible()
    settle(page)
    page.screenshot(path=str(output_dir / "processes-phone-cancel.png"))


def test_a_person_without_the_right_sees_no_link_and_is_refused(
    world: World, browsing: Browsing, output_dir: Path
) -> None:
    page = open_view(browsing, world.server.base_url, mint_token(SECRET, "alice", 3600))
    expect(page.get_by_test_id("proc-refused")).to_be_visible()
    expect(page.get_by_test_id("proc-refused")).to_contain_text("This page is for process admins")
    expect(page.get_by_test_id("nav-processes")).to_be_hidden()
    expect(page.get_by_test_id("strip-processes")).to_be_hidden()
    expect(page.get_by_test_id("proc-instance")).to_have_count(0)
    settle(page)
    page.screenshot(path=str(output_dir / "processes-refused.png"))
    # The page is refused by the server, not only hidden: the same call answers 403.
    answer = httpx.get(
        f"{world.server.base_url}/api/v1/processes",
        headers={"Authorization": f"Bearer {mint_token(SECRET, 'alice', 3600)}"},
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "process_admin_required"


def test_the_view_speaks_the_person_s_language(
    world: World, browsing: Browsing, output_dir: Path
) -> None:
    now = int(time.time())
    claims = {"sub": ADMIN, "iat": now, "exp": now + 3600, "locale": "de-DE"}
    token = jwt.encode({**claims, "roles": [PROCESS_ADMIN]}, SECRET, algorithm="HS256")
    # In dark colours too: the charts take their colours from the page's variables.
    page = open_view(
        browsing,
        world.server.base_url,
        token,
        browsing.page(browsing.context(color_scheme="dark")),
    )
    expect(page.get_by_role("heading", level=1)).to_have_text("Prozesse")
    expect(page.get_by_test_id("nav-processes")).to_have_text("Prozesse")
    expect(page.get_by_test_id("chart-counts")).to_have_accessible_name(
        "Instanzen nach Status Läuft: 1, Abgeschlossen: 2, Abgebrochen: 1, Fehlgeschlagen: 1"
    )
    expect(page.get_by_test_id(f"proc-switch-{INVOICES}")).to_have_accessible_name(
        f"{INVOICES} nimmt neue Instanzen an"
    )
    expect(instance(page, world.running)).to_contain_text("2 von 2 Schritten offen")
    page.set_viewport_size({"width": DESKTOP["width"], "height": 2000})
    settle(page)
    page.screenshot(path=str(output_dir / "processes-desktop-de-dark.png"))
