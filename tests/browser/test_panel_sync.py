"""Staying in step with the server: several tabs, a restarted server, a lost event."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from server.auth import mint_token
from tests.browser.conftest import Browsing
from tests.browser.panel import badge, items, settle, shown_ids
from tests.browser.support import SECRET, Person, Producer, new_id, user_token
from tests.support.server_proc import ServerProcess

pytestmark = pytest.mark.browser


def expect_count(page: Page, count: int) -> None:
    if count:
        expect(badge(page)).to_have_text(str(count))
        label = "1 process task" if count == 1 else f"{count} process tasks"
        expect(badge(page)).to_have_attribute("aria-label", label)
    else:
        expect(badge(page)).to_have_count(0)


def test_two_tabs_stay_identical_through_a_burst_of_50_changes(
    browsing: Browsing, producer: Producer, person: Person, user: str
) -> None:
    first = browsing.open(user)
    second = browsing.open(user)

    # 25 creations in one batch, then 25 concurrent single changes to them.
    bodies = [producer.task_body(user, f"Step {n:02d}", kind="email") for n in range(25)]
    producer.batch([{"op": "create", "task": body} for body in bodies])
    ids = [str(b["id"]) for b in bodies]
    later = datetime.now(UTC) + timedelta(hours=3)
    changes: list[Callable[[], Any]] = []
    changes += [partial(producer.complete, tid) for tid in ids[0:8]]
    changes += [partial(producer.cancel, tid) for tid in ids[8:13]]
    changes += [partial(producer.postpone, tid, later) for tid in ids[13:17]]
    changes += [partial(producer.update, tid, title=f"Renamed {tid}") for tid in ids[17:25]]
    assert len(bodies) + len(changes) == 50
    with ThreadPoolExecutor(max_workers=6) as pool:
        for future in [pool.submit(change) for change in changes]:
            future.result()

    count, seq = person.counter()
    assert count == 8
    expected = person.running_ids()
    for page in (first, second):
        expect_count(page, count)
        expect(items(page)).to_have_count(count)
        expect(items(page).get_by_text("Renamed")).to_have_count(8)
        settle(page)
        assert set(shown_ids(page)) == expected
        assert page.evaluate("window.taskbell.feed.seq") == seq
    assert shown_ids(first) == shown_ids(second)


def test_after_a_server_restart_the_page_reconnects_and_catches_up(
    browsing: Browsing, make_server: Callable[..., ServerProcess], tmp_path: Path, user: str
) -> None:
    """Changes made while the page was away (here through a second server on the same
    database, as in a multi-instance deployment) arrive as a replay after ``since``."""
    db = tmp_path / "restart.db"
    srv = make_server(db=db)
    with Producer(srv.base_url) as producer:
        kept = producer.create(user, "Still here after the restart")
        gone = producer.create(user, "Completed while the page was away")
    page = browsing.open(user, base_url=srv.base_url)
    conn = page.get_by_test_id("conn-state")
    expect(conn).to_have_attribute("data-sync", "snapshot")
    expect_count(page, 2)

    srv.stop()
    expect(conn).to_have_attribute("data-state", "reconnecting")
    expect(conn).to_have_text("Reconnecting…")
    expect(items(page)).to_have_count(2)  # what was shown stays while away

    other = make_server(db=db)
    with Producer(other.base_url) as producer:
        producer.complete(gone["id"])
        added = producer.create(user, "Created while the page was away", kind="page")
    other.stop()

    srv.start()
    expect(conn).to_have_attribute("data-state", "live", timeout=30_000)
    expect(conn).to_have_attribute("data-sync", "replay")
    expect(page.locator(f'#task-list [data-task-id="{added["id"]}"]')).to_be_visible()
    expect(page.locator(f'#task-list [data-task-id="{gone["id"]}"]')).to_have_count(0)
    expect(page.locator(f'#task-list [data-task-id="{kept["id"]}"]')).to_be_visible()
    expect_count(page, 2)


def test_a_seq_gap_makes_the_page_resync_with_since(
    browsing: Browsing, producer: Producer, user: str
) -> None:
    """The browser's own network layer drops one event on the way to the page; the next
    event's seq shows the gap and the page reconnects with ``since``."""
    sent: list[list[str]] = []
    dropped: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        frames: list[str] = []
        sent.append(frames)
        server = ws.connect_to_server()
        lossy = len(sent) == 1

        def to_server(message: str | bytes) -> None:
            frames.append(message if isinstance(message, str) else message.decode())
            server.send(message)

        def to_page(message: str | bytes) -> None:
            text = message if isinstance(message, str) else message.decode()
            if lossy and not dropped and '"seq":2,' in text and "task.added" in text:
                dropped.append(text)
                return
            ws.send(message)

        ws.on_message(to_server)
        server.on_message(to_page)

    page = browsing.page()
    page.route_web_socket("**/ws", route)
    browsing.open(user, page=page)

    tasks = [producer.create(user, f"Step {n}", task_id=new_id("gap")) for n in (1, 2, 3)]

    expect(items(page)).to_have_count(3)
    expect_count(page, 3)
    assert dropped, "the route should have swallowed seq 2"
    assert len(sent) == 2, "exactly one reconnection"
    assert '"since":1' in sent[1][0], f"resumed after the last applied seq: {sent[1][0]}"
    assert set(shown_ids(page)) == {t["id"] for t in tasks}
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-sync", "replay")


def test_an_expired_session_says_so_and_a_fresh_token_from_the_host_resumes_it(
    browsing: Browsing, producer: Producer, server: ServerProcess, user: str
) -> None:
    """The host application embeds the panel and later hands it a new token with
    ``postMessage``; outside demo mode the page cannot mint one itself."""
    short = mint_token(SECRET, user, 2)
    page = browsing.page()
    page.set_content(
        f'<iframe id="panel" src="{server.base_url}/#token={short}"'
        ' style="width:1200px;height:800px;border:0"></iframe>'
    )
    panel = page.frame_locator("#panel")
    conn = panel.get_by_test_id("conn-state")
    # Live for two seconds (on a loaded machine maybe not even that), then 4001.
    expect(conn).to_have_attribute("data-state", "stopped")
    expect(panel.get_by_text("Your session has ended")).to_be_visible()

    task = producer.create(user, "Arrived after the session ended")
    fresh = user_token(user)
    page.evaluate(
        "(token) => document.getElementById('panel').contentWindow"
        ".postMessage({type: 'taskbell.token', token}, '*')",
        fresh,
    )
    expect(conn).to_have_attribute("data-state", "live")
    expect(panel.locator(f'#task-list [data-task-id="{task["id"]}"]')).to_be_visible()
    expect(panel.get_by_text("Your session has ended")).to_be_hidden()


def test_a_wrong_badge_is_repaired_by_the_next_heartbeat(
    browsing: Browsing, make_server: Callable[..., ServerProcess], user: str
) -> None:
    """One frame reaches the page with a wrong count (seq right, nothing missing): no gap
    shows it, but the server's heartbeat carries the true count, and the panel starts
    again from a snapshot by itself."""
    srv = make_server(TASKBELL_HEARTBEAT_SECONDS="2")
    sent: list[list[str]] = []
    corrupted: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        frames: list[str] = []
        sent.append(frames)
        server = ws.connect_to_server()
        first = len(sent) == 1

        def to_server(message: str | bytes) -> None:
            frames.append(message if isinstance(message, str) else message.decode())
            server.send(message)

        def to_page(message: str | bytes) -> None:
            text = message if isinstance(message, str) else message.decode()
            if first and not corrupted and "task.added" in text and '"count":1,' in text:
                text = text.replace('"count":1,', '"count":5,')
                corrupted.append(text)
            ws.send(text)

        ws.on_message(to_server)
        server.on_message(to_page)

    page = browsing.page()
    page.route_web_socket("**/ws", route)
    browsing.open(user, page=page, base_url=srv.base_url)
    with Producer(srv.base_url) as producer:
        producer.create(user, "Approve invoice INV-9", task_id=new_id("beat"))
        expect_count(page, 5)  # what the corrupted frame said
        expect(items(page)).to_have_count(1)
        expect_count(page, 1)  # repaired by the heartbeat
    assert corrupted, "the route should have changed one count"
    assert len(sent) == 2, "exactly one reconnection"
    assert '"since"' not in sent[1][0], "the repair starts from a snapshot"
    expect(page.get_by_test_id("conn-state")).to_have_attribute("data-sync", "snapshot")
