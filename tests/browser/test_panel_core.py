"""The page's pure core (wire.js, feed.js), run as ES modules inside the browser."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from tests.browser.conftest import Browsing
from tests.support.server_proc import ServerProcess

pytestmark = pytest.mark.browser

TASK = {
    "id": "t-1",
    "owner": "alice",
    "title": "Approve invoice",
    "kind": "page",
    "status": "running",
    "process": {"instance_id": "p-1", "name": "Invoice approval"},
    "record": {"entity": "Account", "id": "acc-1", "title": "Acme"},
    "url": "https://crm.example/t-1",
    "postponed_until": None,
    "created_at": "2026-01-01T10:00:00.000000Z",
    "updated_at": "2026-01-01T10:00:00.000000Z",
}


@pytest.fixture
def page(browsing: Browsing, server: ServerProcess) -> Page:
    page = browsing.page()
    page.goto(server.base_url + "/")  # any page of the origin: the modules are imported
    return page


def run(page: Page, body: str, arg: Any = None) -> Any:
    return page.evaluate(
        f"""async (arg) => {{
            const wire = await import("/static/js/wire.js");
            const {{ Feed }} = await import("/static/js/feed.js");
            {body}
        }}""",
        arg,
    )


def test_wire_rejects_unknown_message_types_and_malformed_tasks(page: Page) -> None:
    outcome = run(
        page,
        """
        const attempt = (text) => {
            try { wire.parseServerMessage(text); return "accepted"; }
            catch (err) { return err.name + ": " + err.message; }
        };
        return {
            unknown: attempt('{"type":"task.exploded","seq":1}'),
            notJson: attempt("{"),
            noType: attempt('{"seq":1}'),
            badStatus: attempt(JSON.stringify({type: "task.added", seq: 1, count: 1,
                                               task: {...arg, status: "lost"}})),
            fine: attempt(JSON.stringify({type: "task.added", seq: 1, count: 1, task: arg})),
        };
        """,
        TASK,
    )
    assert outcome == {
        "unknown": "WireError: unknown message type task.exploded",
        "notJson": "WireError: frame is not JSON",
        "noType": "WireError: message.type is not a string",
        "badStatus": "WireError: unknown task status lost",
        "fine": "accepted",
    }


def test_feed_ignores_old_seqs_reports_gaps_and_takes_the_count_from_the_server(
    page: Page,
) -> None:
    outcome = run(
        page,
        """
        const event = (seq, type, count, task = arg) => wire.parseServerMessage(
            JSON.stringify({type, seq, count, task, reason: null}));
        const feed = new Feed("user:alice");
        const before = feed.apply(event(1, "task.added", 1));
        feed.reset({seq: 5, count: 0, tasks: []});
        return {
            before,
            added: feed.apply(event(6, "task.added", 7)),
            count: feed.count,
            repeated: feed.apply(event(6, "task.added", 9)),
            older: feed.apply(event(3, "task.removed", 0)),
            gap: feed.apply(event(8, "task.removed", 0)),
            after: [feed.seq, feed.count, feed.list().map((t) => t.id)],
            syncedOk: feed.synced({seq: 6, count: 7}),
            syncedAhead: feed.synced({seq: 9, count: 1}),
        };
        """,
        TASK,
    )
    assert outcome == {
        "before": "gap",  # nothing applies before a snapshot
        "added": "applied",
        "count": 7,  # the server's count, not 0 + 1
        "repeated": "stale",
        "older": "stale",
        "gap": "gap",
        "after": [6, 7, ["t-1"]],
        "syncedOk": "applied",
        "syncedAhead": "gap",
    }
