"""``/ws`` over the real app: a role's feed, joined and left as membership changes,
and a claim moving a task from the role's feed to the claimer's."""

from __future__ import annotations

from tests.support.app import Live, token
from tests.support.client import FeedClient
from tests.support.tasks import task_body


def queued(tid: str, role: str = "approvers") -> dict[str, object]:
    return {**task_body(tid), "owner": None, "role": role}


async def test_a_role_feed_is_followed_joined_left_and_claimed_from(embedded: Live) -> None:
    live = embedded
    async with live.producer() as p:
        r = await p.put("/api/v1/roles/approvers/members", json={"members": ["alice"]})
        assert r.status_code == 200, r.text
        r = await p.post("/api/v1/tasks", json=queued("q1"))
        assert r.status_code == 201, r.text
    async with (
        FeedClient(live.ws_url, token("alice")) as alice,
        FeedClient(live.ws_url, token("bob")) as bob,
    ):
        snap = await alice.connect()
        assert list(snap["feeds"]) == ["user:alice", "role:approvers"]
        assert alice.others["role:approvers"].tasks.keys() == {"q1"}
        await bob.connect()
        async with live.producer() as p:
            r = await p.post("/api/v1/tasks", json=queued("q2"))
            assert r.status_code == 201
        msg = await alice.recv()
        assert msg["feed"] == "role:approvers" and msg["seq"] == 2
        async with live.producer() as p:
            r = await p.put("/api/v1/roles/approvers/members", json={"members": ["alice", "bob"]})
        joined = await bob.recv(5)
        assert joined["type"] == "feed.joined" and {t["id"] for t in joined["tasks"]} == {
            "q1",
            "q2",
        }
        async with live.producer() as p:
            r = await p.put("/api/v1/roles/approvers/members", json={"members": ["bob"]})
        left = await alice.recv(5)
        assert left == {"type": "feed.left", "feed": "role:approvers"}
        async with live.person("bob") as c:
            r = await c.post("/api/v1/tasks/q1/claim")
            assert r.status_code == 200, r.text
        got = [await bob.recv(5), await bob.recv(5)]
        assert [(m["type"], m["feed"], m["seq"]) for m in got] == [
            ("task.removed", "role:approvers", 3),
            ("task.added", "user:bob", 1),
        ]
        # Nothing of the role reaches alice after feed.left.
        assert [m["type"] for m in await alice.before_pong()] == []
