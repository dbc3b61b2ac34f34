"""``GET /events``: the feed as Server-Sent Events, resuming exactly like ``/ws``."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx

from server.api.events import Positions
from tests.push.sse import open_stream
from tests.support.app import Live, serve, token
from tests.support.client import FeedClient
from tests.support.tasks import assert_error, task_body


async def create(live: Live, *ids: str, owner: str = "alice") -> None:
    async with live.producer() as c:
        for tid in ids:
            assert (await c.post("/api/v1/tasks", json=task_body(tid, owner))).status_code == 201


async def test_a_stream_starts_with_a_snapshot_then_carries_each_change(live: Live) -> None:
    await create(live, "t-1", "t-2")
    async with open_stream(live.base_url, token=token("alice")) as sse:
        snap = await sse.next()
        assert (snap.event, snap.id) == ("snapshot", "2")
        assert sorted(t["id"] for t in snap.data["tasks"]) == ["t-1", "t-2"]
        assert sse.retry == 2000
        await create(live, "t-3")
        async with live.person("alice") as c:
            await c.post("/api/v1/tasks/t-1/complete")
        added, removed = await sse.next(), await sse.next()
    assert (added.event, added.id, added.data["count"]) == ("task.added", "3", 3)
    assert (removed.event, removed.id, removed.data["count"]) == ("task.removed", "4", 2)
    assert removed.data["task"]["status"] == "completed"


async def test_last_event_id_resumes_after_a_gap_exactly_like_the_websocket(live: Live) -> None:
    await create(live, "t-1")
    async with open_stream(live.base_url, token=token("alice")) as sse:
        last = (await sse.next()).id
    assert last == "1"
    # while nobody listens: three changes
    await create(live, "t-2", "t-3")
    async with live.person("alice") as c:
        await c.post("/api/v1/tasks/t-2/complete")
    async with open_stream(live.base_url, token=token("alice"), last_event_id=last) as sse:
        replay = await sse.until("synced")
    async with FeedClient(live.ws_url, token("alice")) as ws:
        ws.seq, ws.count, ws.tasks = 1, 1, {"t-1": {}}  # what it had seen before the gap
        synced = await ws.connect(since=1)
    assert [e.data for e in replay[:-1]] == ws.events
    assert (
        replay[-1].data
        == synced
        == {
            "type": "synced",
            "seq": 4,
            "count": 2,
            "counts": {"running": 2, "postponed": 0},
            "feeds": {
                "user:alice": {"seq": 4, "count": 2, "counts": {"running": 2, "postponed": 0}}
            },
        }
    )
    assert [e.id for e in replay] == ["2", "3", "4", "4"]


async def test_since_in_the_query_and_token_in_the_query_work_for_event_source(
    embedded: Live,
) -> None:
    await create(embedded, "t-1", "t-2")
    async with open_stream(
        embedded.base_url, token=token("alice"), in_query=True, since=1, path="/api/v1/events"
    ) as sse:
        replay = await sse.until("synced")
    assert [(e.event, e.id) for e in replay] == [("task.added", "2"), ("synced", "2")]


async def test_since_ahead_of_the_server_gets_a_snapshot(embedded: Live) -> None:
    await create(embedded, "t-1")
    async with open_stream(embedded.base_url, token=token("alice"), last_event_id=99) as sse:
        snap = await sse.next()
    assert (snap.event, snap.id, snap.data["count"]) == ("snapshot", "1", 1)


async def test_heartbeat_comments_keep_the_stream_alive(sqlite_url: str) -> None:
    from tests.support.app import make_settings

    settings = replace(make_settings(sqlite_url), sse_heartbeat_s=0.1)
    async with serve(settings) as live, open_stream(live.base_url, token=token("bob")) as sse:
        await sse.next()
        await asyncio.sleep(0.35)
        await create(live, "b-1", owner="bob")
        assert (await sse.next()).event == "task.added"
    assert sse.comments.count("keep-alive") >= 2


async def test_a_stream_shows_only_its_owners_feed(embedded: Live) -> None:
    async with open_stream(embedded.base_url, token=token("alice")) as sse:
        await sse.next()
        await create(embedded, "b-1", owner="bob")
        await create(embedded, "a-1")
        event = await sse.next()
    assert (event.event, event.data["task"]["id"]) == ("task.added", "a-1")


async def test_bad_requests_get_json_errors(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        assert_error(await c.get("/events"), 401, "missing_credentials")
        assert_error(await c.get("/events", params={"token": "nope"}), 401, "invalid_token")
        bad = {"Authorization": "Bearer nope"}
        assert_error(await c.get("/events", headers=bad), 401, "invalid_token")
        expired = {"Authorization": f"Bearer {token('alice', ttl=-60)}"}
        assert_error(await c.get("/events", headers=expired), 401, "token_expired")
        me = {"Authorization": f"Bearer {token('alice')}"}
        for value in ("abc", "-1", "1.5", str(2**64)):
            resp = await c.get("/events", headers={**me, "Last-Event-ID": value})
            assert_error(resp, 400, "bad_since")
        assert_error(await c.get("/events", headers=me, params={"since": "x"}), 400, "bad_since")
        assert_error(await c.post("/events", headers=me), 405)


async def test_bad_several_feed_resumes_get_bad_since(embedded: Live) -> None:
    me = {"Authorization": f"Bearer {token('alice')}"}
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        for value in ("1,role:r", "1,role:r=x", "1,bob=2", "1,role:r=1,role:r=2", "role:r=1"):
            resp = await c.get("/events", headers={**me, "Last-Event-ID": value})
            assert_error(resp, 400, "bad_since")
        for feeds in ("{", "[1]", '{"bob": 1}', '{"role:r": -1}', '{"role:r": true}'):
            resp = await c.get("/events", headers=me, params={"since_feeds": feeds})
            assert_error(resp, 400, "bad_since")


async def test_last_event_id_naming_several_feeds_resumes_each(embedded: Live) -> None:
    await create(embedded, "t-1")
    # A feed alice does not follow is ignored, as on /ws.
    async with open_stream(
        embedded.base_url, token=token("alice"), last_event_id="1,role:strangers=4"
    ) as sse:
        synced = await sse.next()
    assert (synced.event, synced.id) == ("synced", "1")
    assert synced.data["feeds"] == {
        "user:alice": {"seq": 1, "count": 1, "counts": {"running": 1, "postponed": 0}}
    }


def test_stream_ids_say_where_every_followed_feed_stands() -> None:
    ids = Positions("user:alice")
    seen = [
        ids.see(m)
        for m in (
            {
                "type": "snapshot",
                "seq": 4,
                "feeds": {"user:alice": {"seq": 4}, "role:r": {"seq": 7}},
            },
            {"type": "task.added", "feed": "role:r", "seq": 8},
            {"type": "task.added", "seq": 5},  # no feed: the own feed's
            {"type": "ping", "feeds": {}},
            {"type": "feed.joined", "feed": "user:bob", "seq": 2},
            {"type": "feed.left", "feed": "role:r"},
            {"type": "pong"},
        )
    ]
    assert seen == [
        "4,role:r=7",
        "4,role:r=8",
        "5,role:r=8",
        None,
        "5,role:r=8,user:bob=2",
        "5,user:bob=2",
        None,
    ]


async def test_an_expired_token_ends_the_stream_with_a_close_event(embedded: Live) -> None:
    async with open_stream(embedded.base_url, token=token("alice", ttl=2)) as sse:
        await sse.next()
        close = await sse.next(timeout=5)
        assert (close.event, close.data) == ("close", {"code": 4001, "reason": "token_expired"})
        try:
            await sse.next(timeout=2)
            raise AssertionError("the stream should have ended")
        except EOFError:
            pass
