"""Several feeds on one connection, the panel's side (docs/protocol.md, "Several feeds"):
My tasks, each role queue with its count and a Claim button, and each person stood in
for; per-feed seq and count, resuming with ``since_feeds``, joined and left feeds, and
heartbeats per feed. The server is scripted here (tests/browser/feeds.py); the same
panel against the real roles and claims API is in test_panel_queues.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, Request, Route, expect

from tests.browser.conftest import DESKTOP, TIMEZONE, Browsing
from tests.browser.feeds import Message, ScriptedServer, Socket, position, task
from tests.browser.panel import badge, items, settle

pytestmark = pytest.mark.browser


def snapshot(user: str) -> Message:
    return {
        "type": "snapshot",
        "seq": 3,
        "count": 1,
        "feeds": {
            f"user:{user}": position(3, 1),
            "role:approvers": position(5, 2),
            "user:bob": position(2, 1),
        },
        "tasks": [
            task("own-1", owner=user, title="Approve invoice INV-1042"),
            task("q-1", owner=None, role="approvers", title="Check the contract of Initech"),
            task(
                "q-2",
                owner=None,
                role="approvers",
                title="Approve the discount for Globex",
                minutes_ago=5,
            ),
            task("bob-1", owner="bob", title="Call Acme Corp about the renewal"),
        ],
    }


def queue_items(page: Page, feed: str = "role:approvers") -> Locator:
    return page.locator(f'[data-feed="{feed}"] [data-testid="queue-item"]')


def wait_for(check: Callable[[], bool], page: Page, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not in time"
        page.wait_for_timeout(25)


def expect_badge(page: Page, n: int) -> None:
    if n == 0:
        expect(badge(page)).to_have_count(0)
        return
    expect(badge(page)).to_have_text(str(n))
    expect(badge(page)).to_have_attribute(
        "aria-label", "1 process task" if n == 1 else f"{n} process tasks"
    )


def open_scripted(
    browsing: Browsing, user: str, server: ScriptedServer, page: Page | None = None
) -> Page:
    page = page or browsing.page()
    server.install(page)
    return browsing.open(user, page=page)


def test_my_tasks_each_queue_and_each_person_stood_in_for_with_their_counts(
    browsing: Browsing, user: str, output_dir: Path
) -> None:
    server = ScriptedServer(lambda sock, auth: [snapshot(user)])
    page = open_scripted(browsing, user, server)

    expect_badge(page, 4)
    expect(page.get_by_test_id("own-count")).to_have_text("1")
    expect(items(page)).to_have_count(1)
    approvers = page.locator('[data-feed="role:approvers"]')
    expect(approvers.get_by_test_id("feed-title")).to_have_text("Queue: approvers")
    expect(approvers.get_by_test_id("feed-count")).to_have_text("2")
    expect(queue_items(page)).to_have_count(2)
    for n in range(2):
        card = queue_items(page).nth(n)
        expect(card.get_by_role("button", name="Claim")).to_be_visible()
        expect(card.get_by_test_id("complete")).to_have_count(0)
    bob = page.locator('[data-feed="user:bob"]')
    expect(bob.get_by_test_id("feed-title")).to_have_text("Standing in for Bob")
    expect(bob.get_by_test_id("feed-count")).to_have_text("1")
    expect(bob.get_by_test_id("standin-item").get_by_test_id("complete")).to_be_visible()
    settle(page)
    page.screenshot(path=str(output_dir / "panel-feeds.png"))

    # Live: each event moves its own feed's seq and count; the badge is their sum.
    sock = server.last
    sock.send({"type": "task.added", "feed": "role:approvers", "seq": 6, "count": 3,
               "task": task("q-3", owner=None, role="approvers"), "reason": None})  # fmt: skip
    expect(approvers.get_by_test_id("feed-count")).to_have_text("3")
    expect_badge(page, 5)
    done = {**task("bob-1", owner="bob"), "status": "completed"}
    sock.send({"type": "task.removed", "feed": "user:bob", "seq": 3, "count": 0,
               "task": done, "reason": "completed"})  # fmt: skip
    expect(bob.get_by_test_id("feed-count")).to_have_text("0")
    expect(bob).to_contain_text("Nothing of theirs is waiting.")
    expect_badge(page, 4)
    # A message without `feed` (a server from before several feeds) is the own feed's.
    sock.send({"type": "task.added", "seq": 4, "count": 2, "task": task("own-2", owner=user)})
    expect(items(page)).to_have_count(2)
    expect(page.get_by_test_id("own-count")).to_have_text("2")
    expect_badge(page, 5)
    assert len(server.sockets) == 1, "no reconnection on the way"


def test_claim_asks_the_server_and_the_feeds_move_the_card_to_my_tasks(
    browsing: Browsing, user: str
) -> None:
    server = ScriptedServer(lambda sock, auth: [snapshot(user)])
    claims: list[Request] = []

    def claim(route: Route) -> None:
        claims.append(route.request)
        if route.request.url.endswith("/q-2/claim"):
            body = {"error": {"code": "already_claimed", "message": "carol claimed it"}}
            route.fulfill(status=409, content_type="application/json", body=json.dumps(body))
            return
        route.fulfill(status=200, content_type="application/json",
                      body=json.dumps(task("q-1", owner=user, role="approvers")))  # fmt: skip

    page = browsing.page()
    page.route("**/api/v1/tasks/*/claim", claim)
    open_scripted(browsing, user, server, page)
    expect(queue_items(page)).to_have_count(2)

    # From the keyboard: the Claim button is a plain button in the tab order.
    queue_items(page).filter(has_text="Initech").get_by_role("button", name="Claim").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("announcer")).to_contain_text(
        "Claimed: Check the contract of Initech"
    )
    assert claims[0].method == "POST"
    assert (claims[0].headers.get("authorization") or "").startswith("Bearer ")
    sock = server.last
    claimed = task("q-1", owner=user, role="approvers", title="Check the contract of Initech")
    sock.send({"type": "task.removed", "feed": "role:approvers", "seq": 6, "count": 1,
               "task": claimed, "reason": "claimed"})  # fmt: skip
    sock.send({"type": "task.added", "feed": f"user:{user}", "seq": 4, "count": 2, "task": claimed})
    expect(queue_items(page)).to_have_count(1)
    expect(items(page).filter(has_text="Initech")).to_have_count(1)
    expect(page.get_by_test_id("own-count")).to_have_text("2")
    expect_badge(page, 4)

    queue_items(page).first.get_by_role("button", name="Claim").click()
    expect(page.get_by_test_id("toast")).to_contain_text(
        "Someone else claimed “Approve the discount for Globex” first."
    )


@pytest.mark.parametrize("motion", ["no-preference", "reduce"])
def test_a_card_claimed_by_someone_else_leaves_the_queue_with_a_short_animation(
    browsing: Browsing, user: str, motion: str
) -> None:
    ctx = browsing.browser.new_context(
        viewport=DESKTOP,  # type: ignore[arg-type]
        timezone_id=TIMEZONE,
        reduced_motion=motion,  # type: ignore[arg-type]
    )
    browsing.contexts.append(ctx)
    server = ScriptedServer(lambda sock, auth: [snapshot(user)])
    page = open_scripted(browsing, user, server, browsing.page(ctx))
    expect(queue_items(page)).to_have_count(2)
    page.evaluate(
        """() => {
          window.__left = [];
          new MutationObserver((records) => {
            for (const r of records) {
              const el = r.target;
              if (r.attributeName === 'data-testid' && el.dataset.testid === 'queue-item-leaving') {
                const animated = el.getAnimations().some((a) => a.playState === 'running');
                window.__left.push({ id: el.dataset.taskId, animated });
              }
            }
          }).observe(document.body,
                     { subtree: true, attributes: true, attributeFilter: ['data-testid'] });
        }"""
    )
    taken = task("q-1", owner="carol", role="approvers")
    server.last.send({"type": "task.removed", "feed": "role:approvers", "seq": 6, "count": 1,
                      "task": taken, "reason": "claimed"})  # fmt: skip
    expect(queue_items(page)).to_have_count(1)
    expect(page.locator('[data-task-id="q-1"]')).to_have_count(0)  # gone, not only hidden
    left = page.evaluate("window.__left")
    assert left == [{"id": "q-1", "animated": motion == "no-preference"}]
    expect(page.get_by_test_id("announcer")).to_contain_text("Claimed by carol: Task q-1.")


def test_a_gap_in_one_feed_resumes_every_feed_with_since_and_since_feeds(
    browsing: Browsing, user: str
) -> None:
    def answer(sock: Socket, auth: Message) -> list[Message]:
        if "since" not in auth:
            return [snapshot(user)]
        return [
            {"type": "task.added", "feed": "role:approvers", "seq": 6, "count": 3,
             "task": task("q-3", owner=None, role="approvers")},
            {"type": "task.added", "feed": "role:approvers", "seq": 7, "count": 4,
             "task": task("q-4", owner=None, role="approvers")},
            {"type": "synced", "seq": 3, "count": 1, "feeds": {
                f"user:{user}": position(3, 1), "role:approvers": position(7, 4),
                "user:bob": position(2, 1)}},
        ]  # fmt: skip

    server = ScriptedServer(answer)
    page = open_scripted(browsing, user, server)
    expect_badge(page, 4)
    # seq 6 of the queue never arrives: 7 shows the gap.
    server.last.send({"type": "task.added", "feed": "role:approvers", "seq": 7, "count": 4,
                      "task": task("q-4", owner=None, role="approvers")})  # fmt: skip
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-sync", "replay")
    assert len(server.sockets) == 2
    resumed = server.sockets[1].auth
    assert resumed["since"] == 3
    assert resumed["since_feeds"] == {"role:approvers": 5, "user:bob": 2}
    expect(queue_items(page)).to_have_count(4)
    expect_badge(page, 6)


def test_feeds_joined_and_left_come_and_go_and_heartbeats_check_every_feed(
    browsing: Browsing, user: str
) -> None:
    server = ScriptedServer(lambda sock, auth: [snapshot(user)])
    page = open_scripted(browsing, user, server)
    expect_badge(page, 4)
    sock = server.last

    sock.send({"type": "feed.joined", "feed": "role:reviewers", "seq": 8, "count": 1,
               "tasks": [task("r-1", owner=None, role="reviewers")]})  # fmt: skip
    reviewers = page.locator('[data-feed="role:reviewers"]')
    expect(reviewers.get_by_test_id("feed-title")).to_have_text("Queue: reviewers")
    expect(reviewers.get_by_test_id("feed-count")).to_have_text("1")
    expect_badge(page, 5)
    sock.send({"type": "task.added", "feed": "role:reviewers", "seq": 9, "count": 2,
               "task": task("r-2", owner=None, role="reviewers")})  # fmt: skip
    expect(queue_items(page, "role:reviewers")).to_have_count(2)
    sock.send({"type": "feed.left", "feed": "user:bob"})
    expect(page.locator('[data-feed="user:bob"]')).to_have_count(0)
    expect_badge(page, 5)
    order = page.evaluate(
        "[...document.querySelectorAll('[data-testid=feed-section]')].map((s) => s.dataset.feed)"
    )
    assert order == ["role:approvers", "role:reviewers"]

    agreeing = {f"user:{user}": position(3, 1), "role:approvers": position(5, 2),
                "role:reviewers": position(9, 2)}  # fmt: skip
    sock.send({"type": "ping", "feeds": agreeing})
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    page.wait_for_timeout(200)
    assert len(server.sockets) == 1, "a heartbeat that agrees changes nothing"
    sock.send({"type": "ping", "feeds": {**agreeing, "role:reviewers": position(9, 3)}})
    wait_for(lambda: len(server.sockets) == 2, page)  # the queue's count differs: start again
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-state", "live")
    assert "since" not in server.sockets[1].auth, "the repair starts from a snapshot"


def test_on_a_phone_with_nothing_of_ones_own_the_queues_still_show(
    browsing: Browsing, user: str, output_dir: Path
) -> None:
    def answer(sock: Socket, auth: Message) -> list[Message]:
        snap = snapshot(user)
        snap["feeds"][f"user:{user}"] = position(3, 0)
        snap["count"] = 0
        snap["tasks"] = [t for t in snap["tasks"] if t["owner"] != user]
        return [snap]

    ctx = browsing.context(viewport={"width": 390, "height": 844}, scale=2)
    page = open_scripted(browsing, user, ScriptedServer(answer), browsing.page(ctx))
    expect_badge(page, 3)
    expect(page.get_by_text("Nothing assigned to you right now.")).to_be_visible()
    expect(page.get_by_text("You're all caught up")).to_be_hidden()
    expect(queue_items(page)).to_have_count(2)
    settle(page)
    page.screenshot(path=str(output_dir / "panel-feeds-phone.png"))


FAKE_NOTIFICATIONS = """(() => {
  const log = (window.__notes = { shown: [], closed: [] });
  class FakeNotification {
    static get permission() { return "granted"; }
    static async requestPermission() { return "granted"; }
    constructor(title, options) { this.tag = options.tag; log.shown.push(options.tag); }
    close() { log.closed.push(this.tag); }
  }
  window.Notification = FakeNotification;
  Object.defineProperty(document, "visibilityState", { get: () => "hidden" });
})();"""


def test_a_queue_task_is_a_desktop_notification_that_stays_when_this_person_claims_it(
    browsing: Browsing, user: str
) -> None:
    """The Notification API and a hidden tab are stand-ins (headless shows neither)."""
    server = ScriptedServer(lambda sock, auth: [snapshot(user)])
    page = browsing.page()
    page.add_init_script(FAKE_NOTIFICATIONS)
    open_scripted(browsing, user, server, page)
    expect(queue_items(page)).to_have_count(2)
    sock = server.last
    sock.send({"type": "task.added", "feed": "role:approvers", "seq": 6, "count": 3,
               "task": task("q-3", owner=None, role="approvers")})  # fmt: skip
    wait_for(lambda: page.evaluate("window.__notes.shown") == ["q-3"], page)

    mine = task("q-3", owner=user, role="approvers")
    sock.send({"type": "task.removed", "feed": "role:approvers", "seq": 7, "count": 2,
               "task": mine, "reason": "claimed"})  # fmt: skip
    sock.send({"type": "task.added", "feed": f"user:{user}", "seq": 4, "count": 2, "task": mine})
    expect(page.locator('#task-list [data-task-id="q-3"]')).to_have_count(1)
    assert page.evaluate("window.__notes.closed") == [], "still this person's to do"

    # Claimed by someone else: gone from every feed followed here, so it closes.
    sock.send({"type": "task.added", "feed": "role:approvers", "seq": 8, "count": 3,
               "task": task("q-4", owner=None, role="approvers")})  # fmt: skip
    wait_for(lambda: "q-4" in page.evaluate("window.__notes.shown"), page)
    by_carol = task("q-4", owner="carol", role="approvers")
    sock.send({"type": "task.removed", "feed": "role:approvers", "seq": 9, "count": 2,
               "task": by_carol, "reason": "claimed"})  # fmt: skip
    wait_for(lambda: page.evaluate("window.__notes.closed") == ["q-4"], page)
