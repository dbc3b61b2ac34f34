"""Role queues and substitutes against the real server: every member sees a queue task
in that queue with its count, the one who claims it gets it in My tasks and it leaves the
others' queue; a substitute sees the absent person's tasks and completes them."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Browsing
from tests.browser.panel import badge, items, settle
from tests.browser.support import Producer

pytestmark = pytest.mark.browser


def queue(page: Page, role: str) -> Locator:
    return page.locator(f'[data-testid="feed-section"][data-feed="role:{role}"]')


def expect_badge(page: Page, n: int) -> None:
    if n == 0:
        expect(badge(page)).to_have_count(0)
    else:
        expect(badge(page)).to_have_text(str(n))
        label = "1 process task" if n == 1 else f"{n} process tasks"
        expect(badge(page)).to_have_attribute("aria-label", label)


def test_a_queue_task_is_in_every_members_queue_until_one_claims_it(
    browsing: Browsing, producer: Producer, user: str, output_dir: Path
) -> None:
    colleague = f"{user}-b"
    role = f"approvers-{uuid.uuid4().hex[:6]}"
    producer.set_members(role, [user, colleague])
    own = producer.create(user, "Approve invoice INV-7")
    queued = producer.create_for_role(role, "Check the contract of Initech")
    mine = browsing.open(user)
    theirs = browsing.open(colleague)

    for page, total in ((mine, 2), (theirs, 1)):
        expect(queue(page, role).get_by_test_id("feed-title")).to_have_text(f"Queue: {role}")
        expect(queue(page, role).get_by_test_id("feed-count")).to_have_text("1")
        expect(queue(page, role).get_by_test_id("queue-item")).to_have_count(1)
        expect_badge(page, total)
    expect(mine.get_by_test_id("own-count")).to_have_text("1")
    settle(mine)
    mine.screenshot(path=str(output_dir / "panel-queue.png"))

    theirs.evaluate(
        """() => {
          window.__left = [];
          new MutationObserver((records) => {
            for (const r of records) {
              if (r.target.dataset.testid !== 'queue-item-leaving') continue;
              const animated = r.target.getAnimations().some((a) => a.playState === 'running');
              window.__left.push({ id: r.target.dataset.taskId, animated });
            }
          }).observe(document.body,
                     { subtree: true, attributes: true, attributeFilter: ['data-testid'] });
        }"""
    )
    queue(mine, role).get_by_role("button", name="Claim").click()
    expect(items(mine)).to_have_count(2)
    expect(mine.locator(f'#task-list [data-task-id="{queued["id"]}"]')).to_be_visible()
    expect(queue(mine, role).get_by_test_id("feed-count")).to_have_text("0")
    expect(queue(theirs, role).get_by_test_id("queue-item")).to_have_count(0)
    expect(queue(theirs, role).get_by_test_id("feed-count")).to_have_text("0")
    expect_badge(mine, 2)
    expect_badge(theirs, 0)
    assert theirs.evaluate("window.__left") == [{"id": queued["id"], "animated": True}]
    assert producer.get(queued["id"])["owner"] == user
    assert producer.get(own["id"])["owner"] == user


def test_joining_and_leaving_a_role_brings_and_takes_its_queue_live(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    role = f"reviewers-{uuid.uuid4().hex[:6]}"
    producer.set_members(role, [f"{user}-someone"])
    producer.create_for_role(role, "Review the offer for Globex")
    page = browsing.open(user)
    expect(queue(page, role)).to_have_count(0)

    producer.set_members(role, [f"{user}-someone", user])
    expect(queue(page, role).get_by_test_id("queue-item")).to_have_count(1)
    expect_badge(page, 1)
    producer.set_members(role, [f"{user}-someone"])
    expect(queue(page, role)).to_have_count(0)
    expect_badge(page, 0)


def test_a_substitute_sees_the_absent_persons_tasks_and_completes_one(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    absent = f"{user}-away"
    task = producer.create(absent, "Call Acme Corp about the renewal")
    producer.substitute(absent, user)
    page = browsing.open(user)
    section = page.locator(f'[data-testid="feed-section"][data-feed="user:{absent}"]')
    expect(section.get_by_test_id("feed-title")).to_have_text(
        f"Standing in for {absent[0].upper()}{absent[1:]}"
    )
    expect(section.get_by_test_id("feed-count")).to_have_text("1")
    expect_badge(page, 1)

    section.get_by_test_id("standin-item").get_by_role("button", name="Complete").click()
    expect(section.get_by_test_id("standin-item")).to_have_count(0)
    expect_badge(page, 0)
    done = producer.get(task["id"])
    assert done["status"] == "completed" and done["acted_by"] == user
