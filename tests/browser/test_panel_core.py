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


def test_several_feeds_each_keep_their_seq_and_count_and_the_badge_is_their_sum(
    page: Page,
) -> None:
    outcome = run(
        page,
        """
        const t = (id, owner, role = null) => ({...arg, id, owner, role});
        const msg = (m) => wire.parseServerMessage(JSON.stringify(m));
        const feed = new Feed("user:alice");
        feed.reset(msg({type: "snapshot", seq: 3, count: 1, tasks: [
            t("a", "alice"), t("q", null, "approvers"), t("b", "bob")],
          feeds: {"user:alice": {seq: 3, count: 1}, "role:approvers": {seq: 5, count: 1},
                  "user:bob": {seq: 2, count: 1}}}));
        const grouped = feed.names().map((n) => [n, feed.list(n).map((x) => x.id)]);
        const claimedElsewhere = feed.apply(msg({type: "task.removed", feed: "role:approvers",
            seq: 6, count: 0, task: t("q", "carol", "approvers"), reason: "claimed"}));
        const ownWithoutFeed = feed.apply(msg({type: "task.added", seq: 4, count: 2,
            task: t("a2", "alice")}));
        const gapInBob = feed.apply(msg({type: "task.added", feed: "user:bob", seq: 4, count: 2,
            task: t("b2", "bob")}));
        const notFollowed = feed.apply(msg({type: "task.added", feed: "role:strangers", seq: 1,
            count: 1, task: t("s", null, "strangers")}));
        const since = [feed.seq, feed.sinceFeeds()];
        const total = feed.count;
        const agrees = feed.agrees({"user:alice": {seq: 4, count: 2},
            "role:approvers": {seq: 6, count: 0}, "user:bob": {seq: 2, count: 1}});
        const missingOne = feed.agrees({"user:alice": {seq: 4, count: 2},
            "role:approvers": {seq: 6, count: 0}});
        const replayShort = feed.synced({seq: 4, count: 2,
            feeds: {"user:alice": {seq: 4, count: 2}, "user:bob": {seq: 3, count: 1}}});
        const leftAway = feed.synced({seq: 4, count: 2,
            feeds: {"user:alice": {seq: 4, count: 2}, "user:bob": {seq: 2, count: 1}}});
        return {grouped, claimedElsewhere, ownWithoutFeed, gapInBob, notFollowed, since, total,
                agrees, missingOne, replayShort, leftAway, after: feed.names(), count: feed.count};
        """,
        TASK,
    )
    assert outcome == {
        "grouped": [["user:alice", ["a"]], ["role:approvers", ["q"]], ["user:bob", ["b"]]],
        "claimedElsewhere": "applied",
        "ownWithoutFeed": "applied",  # a server from before several feeds
        "gapInBob": "gap",
        "notFollowed": "gap",
        "since": [4, {"role:approvers": 6, "user:bob": 2}],
        "total": 3,  # 2 + 0 + 1, each the server's count
        "agrees": True,
        "missingOne": False,
        "replayShort": "gap",
        "leftAway": "applied",  # role:approvers is no longer followed
        "after": ["user:alice", "user:bob"],
        "count": 3,
    }
