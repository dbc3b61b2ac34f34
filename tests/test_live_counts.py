"""Live counts over the API and ``/ws`` (SQLite and PostgreSQL): every message with a
``count`` carries ``counts`` (``tests.support.client`` checks that on every message it
reads), and a change of the postponed count alone reaches the feed's sockets as an
event of its own (docs/protocol.md, "Live counts")."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from server.settings import Settings
from tests.support.app import Live, serve, token
from tests.support.audiences import ACME, person, producer, two_tenants
from tests.support.client import FeedClient
from tests.support.tasks import task_body

LATER = "2099-01-01T00:00:00Z"


def postponed(tid: str, owner: str = "alice", **extra: Any) -> dict[str, Any]:
    return {**task_body(tid, owner), "postponed_until": LATER, **extra}


def counts(message: dict[str, Any]) -> tuple[int, int]:
    return message["counts"]["running"], message["counts"]["postponed"]


async def test_a_task_created_postponed_reaches_the_socket_with_the_new_counts(
    live: Live,
) -> None:
    async with FeedClient(live.ws_url, token("alice")) as feed:
        snap = await feed.connect()
        assert counts(snap) == (0, 0)
        async with live.producer() as p:
            assert (await p.post("/api/v1/tasks", json=postponed("t1"))).status_code == 201
        await feed.until_seq(1)
        event = feed.events[-1]
        assert (event["type"], event["reason"], event["task"]["status"]) == (
            "task.removed",
            "created",
            "postponed",
        )
        assert (event["count"], counts(event)) == (0, (0, 1))
        assert feed.tasks == {}
        async with live.producer() as p:
            assert (await p.post("/api/v1/tasks/t1/resume")).status_code == 200
        await feed.until_seq(2)
    assert (feed.events[-1]["type"], counts(feed.events[-1])) == ("task.added", (1, 0))


async def test_ending_a_postponed_task_lowers_the_postponed_count_by_an_event(
    live: Live,
) -> None:
    async with live.producer() as p:
        for tid in ("t1", "t2"):
            await p.post("/api/v1/tasks", json=postponed(tid))
    async with FeedClient(live.ws_url, token("alice")) as feed:
        assert counts(await feed.connect()) == (0, 2)
        async with live.producer() as p:
            assert (await p.post("/api/v1/tasks/t1/cancel")).status_code == 200
            assert (await p.post("/api/v1/tasks/t2/complete")).status_code == 200
        await feed.until_seq(4)
    assert [(e["reason"], counts(e)) for e in feed.events] == [
        ("canceled", (0, 1)),
        ("completed", (0, 0)),
    ]


async def test_reassigning_a_postponed_task_moves_its_count_to_the_new_owners_feed(
    live: Live,
) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=postponed("t1"))
    async with (
        FeedClient(live.ws_url, token("alice")) as alice,
        FeedClient(live.ws_url, token("bob")) as bob,
    ):
        await alice.connect()
        assert counts(await bob.connect()) == (0, 0)
        async with live.producer() as p:
            assert (await p.patch("/api/v1/tasks/t1", json={"owner": "bob"})).status_code == 200
        await alice.until_seq(2)
        await bob.until_seq(1)
    assert (alice.events[-1]["reason"], counts(alice.events[-1])) == ("reassigned", (0, 0))
    assert (bob.events[-1]["reason"], counts(bob.events[-1])) == ("reassigned", (0, 1))


async def test_claiming_a_postponed_queue_task_moves_its_count_from_the_queue(
    live: Live,
) -> None:
    async with live.producer() as p:
        await p.put("/api/v1/roles/desk/members", json={"members": ["alice"]})
        body = postponed("q1", owner=None, role="desk")  # type: ignore[arg-type]
        assert (await p.post("/api/v1/tasks", json=body)).status_code == 201
    async with FeedClient(live.ws_url, token("alice")) as feed:
        snap = await feed.connect()
        assert snap["feeds"]["role:desk"]["counts"] == {"running": 0, "postponed": 1}
        async with live.person("alice") as me:
            assert (await me.post("/api/v1/tasks/q1/claim")).status_code == 200
        await feed.until_seq(1)
        for _ in range(20):
            if feed.others["role:desk"].seq == 2:
                break
            await feed.recv()
        assert (feed.others["role:desk"].seq, feed.others["role:desk"].postponed) == (2, 0)
    assert (feed.events[-1]["feed"], counts(feed.events[-1])) in {
        ("user:alice", (0, 1)),
        ("role:desk", (0, 0)),
    }
    assert feed.postponed == 1


async def test_the_counter_snapshot_and_synced_carry_the_postponed_count(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=task_body("t1"))
        await p.post("/api/v1/tasks", json=postponed("t2"))
    async with live.person("alice") as me:
        counter = (await me.get("/api/v1/me/counter")).json()
    assert counter["counts"] == {"running": 1, "postponed": 1}
    assert counter["feeds"]["user:alice"]["counts"] == {"running": 1, "postponed": 1}
    async with FeedClient(live.ws_url, token("alice")) as feed:
        assert counts(await feed.connect()) == (1, 1)
    again = FeedClient(live.ws_url, token("alice"))
    again.seq, again.count, again.tasks = 1, 1, {"t1": {}}
    synced = await again.connect(since=1)
    await again.close()
    assert synced["type"] == "synced" and counts(synced) == (1, 1)
    assert counts(again.events[-1]) == (1, 1)


async def test_another_tenants_postponed_tasks_never_count_here(backend: Settings) -> None:
    async with serve(two_tenants(backend)) as live:
        async with producer(live) as d, producer(live, ACME) as a:
            assert (await d.post("/api/v1/tasks", json=postponed("t1"))).status_code == 201
            for tid in ("t1", "t2"):  # the same task id and owner, in acme
                assert (await a.post("/api/v1/tasks", json=postponed(tid))).status_code == 201
            assert (await a.patch("/api/v1/tasks/t1", json={"owner": "bob"})).status_code == 200
        async with person(live, "alice") as da, person(live, "alice", ACME) as aa:
            default = (await da.get("/api/v1/me/counter")).json()
            acme = (await aa.get("/api/v1/me/counter")).json()
    assert (default["seq"], default["counts"]) == (1, {"running": 0, "postponed": 1})
    assert (acme["seq"], acme["counts"]) == (3, {"running": 0, "postponed": 1})


async def test_the_event_stream_carries_the_postponed_only_change_with_its_counts(
    live: Live,
) -> None:
    async with (
        httpx.AsyncClient(base_url=live.base_url) as http,
        http.stream("GET", "/events", params={"token": token("alice")}, timeout=10) as stream,
    ):
        lines = stream.aiter_lines()
        seen: list[dict[str, Any]] = []
        async for line in lines:
            if line.startswith("data:"):
                seen.append(orjson.loads(line[len("data:") :]))
                if seen[-1]["type"] == "snapshot":
                    break
        async with live.producer() as p:
            await p.post("/api/v1/tasks", json=postponed("t1"))
        async for line in lines:
            if line.startswith("data:"):
                seen.append(orjson.loads(line[len("data:") :]))
                if seen[-1]["type"].startswith("task."):
                    break
    assert counts(seen[0]) == (0, 0)
    assert (seen[-1]["type"], seen[-1]["seq"], counts(seen[-1])) == ("task.removed", 1, (0, 1))
