"""``/ws``: auth, snapshot, replay, live events, ping, and every close code."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import jwt
import orjson
import pytest

from server.settings import Settings
from tests.support.app import Live, key, make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.stalled import StalledClient, flood_until_too_slow
from tests.support.tasks import task_body


async def test_snapshot_then_live_events_with_seq_and_count(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=task_body("t0"))
    async with FeedClient(live.ws_url, token("alice")) as feed:
        snap = await feed.connect()
        assert snap["type"] == "snapshot" and (snap["seq"], snap["count"]) == (1, 1)
        assert [t["id"] for t in snap["tasks"]] == ["t0"]
        async with live.producer() as p:
            await p.post("/api/v1/tasks", json=task_body("t1"))
            await p.patch("/api/v1/tasks/t1", json={"title": "changed"})
            await p.post("/api/v1/tasks/t0/complete")
            await p.post("/api/v1/tasks/t1/postpone", json={"until": "2099-01-01T00:00:00Z"})
        await feed.until_seq(5)
    kinds = [(e["type"], e["seq"], e["count"], e["reason"]) for e in feed.events]
    assert kinds == [
        ("task.added", 2, 2, "created"),
        ("task.updated", 3, 2, None),
        ("task.removed", 4, 1, "completed"),
        ("task.removed", 5, 0, "postponed"),
    ]
    assert feed.events[-1]["task"]["status"] == "postponed"
    assert feed.tasks == {}


async def test_reassignment_reaches_both_owners(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=task_body("t0", "alice"))
    async with (
        FeedClient(live.ws_url, token("alice")) as alice,
        FeedClient(live.ws_url, token("bob")) as bob,
    ):
        await alice.connect()
        await bob.connect()
        async with live.producer() as p:
            await p.patch("/api/v1/tasks/t0", json={"owner": "bob"})
        await alice.until_seq(2)
        await bob.until_seq(1)
    assert alice.events[-1]["type"] == "task.removed"
    assert alice.events[-1]["reason"] == "reassigned" and alice.count == 0
    assert bob.events[-1]["type"] == "task.added" and bob.count == 1


async def test_since_replays_missed_events_then_synced(live: Live) -> None:
    async with live.producer() as p:
        for i in range(5):
            await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
    feed = FeedClient(live.ws_url, token("alice"))
    feed.seq, feed.count = 2, 2
    feed.tasks = {"t0": {}, "t1": {}}
    synced = await feed.connect(since=2)
    await feed.close()
    assert synced == {
        "type": "synced",
        "seq": 5,
        "count": 5,
        "counts": {"running": 5, "postponed": 0},
        "feeds": {"user:alice": {"seq": 5, "count": 5, "counts": {"running": 5, "postponed": 0}}},
    }
    assert [e["seq"] for e in feed.events] == [3, 4, 5]


async def test_since_equal_to_current_seq_sends_only_synced(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=task_body("t0"))
    feed = FeedClient(live.ws_url, token("alice"))
    feed.seq, feed.count, feed.tasks = 1, 1, {"t0": {}}
    assert await feed.connect(since=1) == {
        "type": "synced",
        "seq": 1,
        "count": 1,
        "counts": {"running": 1, "postponed": 0},
        "feeds": {"user:alice": {"seq": 1, "count": 1, "counts": {"running": 1, "postponed": 0}}},
    }
    await feed.close()


async def test_since_ahead_of_server_gives_a_snapshot(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=task_body("t0"))
    async with FeedClient(live.ws_url, token("alice")) as feed:
        first = await feed.connect(since=99)
    assert first["type"] == "snapshot" and first["seq"] == 1


async def test_since_older_than_replay_limit_gives_a_snapshot(sqlite_url: str) -> None:
    async with serve(make_settings(sqlite_url, replay_limit=3)) as live:
        async with live.producer() as p:
            for i in range(6):
                await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
        async with FeedClient(live.ws_url, token("alice")) as feed:
            first = await feed.connect(since=1)
    assert first["type"] == "snapshot" and first["count"] == 6


@pytest.mark.parametrize(
    ("since", "first_type"),
    [
        (2, "synced"),  # exactly replay_limit (3) behind: replayed
        (1, "snapshot"),  # one more: a snapshot
        (6, "snapshot"),  # ahead of the server's seq 5: a snapshot
    ],
    ids=["at-the-limit", "one-past-the-limit", "ahead"],
)
async def test_replay_limit_edges(backend: Settings, since: int, first_type: str) -> None:
    async with serve(replace(backend, replay_limit=3)) as live:
        async with live.producer() as p:
            for i in range(5):
                await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
        feed = FeedClient(live.ws_url, token("alice"))
        feed.seq = feed.count = min(since, 5)
        feed.tasks = {f"t{i}": {} for i in range(feed.count)}
        first = await feed.connect(since=since)
        await feed.close()
    assert first["type"] == first_type
    assert (first["seq"], first["count"]) == (5, 5)
    if first_type == "synced":
        assert [e["seq"] for e in feed.events] == [3, 4, 5]
    else:
        assert feed.events == [] and sorted(feed.tasks) == [f"t{i}" for i in range(5)]


async def test_ping_is_answered_with_pong(embedded: Live) -> None:
    async with FeedClient(embedded.ws_url, token("alice")) as feed:
        await feed.connect()
        await feed.send({"type": "ping"})
        assert await feed.recv() == {"type": "pong"}


async def test_every_tab_sees_the_same_events_and_counts(live: Live) -> None:
    tabs = [FeedClient(live.ws_url, token("alice")) for _ in range(3)]
    for tab in tabs:
        await tab.connect()
    async with live.producer() as p:
        for i in range(10):
            await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
        for i in range(0, 10, 2):
            await p.post(f"/api/v1/tasks/t{i}/complete")
    for tab in tabs:
        await tab.until_seq(15)
        await tab.close()
    assert tabs[0].counts_by_seq == tabs[1].counts_by_seq == tabs[2].counts_by_seq
    assert tabs[0].count == 5 == await live.parts.reads.running_count("default", "user:alice")


async def test_concurrent_producers_keep_seq_contiguous_and_count_exact(live: Live) -> None:
    async with FeedClient(live.ws_url, token("alice")) as feed:
        await feed.connect()

        async def worker(w: int) -> None:
            async with live.producer() as p:
                for i in range(15):
                    await p.post("/api/v1/tasks", json=task_body(f"w{w}-{i}"))
                    if i % 3 == 0:
                        await p.post(f"/api/v1/tasks/w{w}-{i}/complete")

        await asyncio.gather(*(worker(w) for w in range(6)))
        pos = await live.parts.reads.counter(key("alice"))
        count, seq = pos.count, pos.seq
        await feed.until_seq(seq)
    assert seq == 6 * (15 + 5)
    assert (
        count
        == feed.count
        == await live.parts.reads.running_count("default", "user:alice")
        == 6 * 10
    )


# ---------------------------------------------------------------- close codes


async def closed(live: Live, *frames: str | bytes) -> tuple[int | None, str]:
    from websockets.asyncio.client import connect

    async with connect(live.ws_url, max_size=None) as ws:
        for frame in frames:
            await ws.send(frame)
        feed = FeedClient(live.ws_url, "")
        feed.ws = ws
        return await feed.closed_with()


async def test_no_auth_in_time_closes_4001(sqlite_url: str) -> None:
    async with serve(make_settings(sqlite_url, auth_timeout_s=0.3)) as live:
        code, reason = await closed(live)
    assert code == 4001 and "auth" in reason


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type": "ping"}', 4001),
        ('{"type": "auth", "token": "garbage"}', 4001),
        ('{"type": "auth"}', 1008),
        ('{"type": "auth", "token": "x", "since": -1}', 1008),
        ('{"type": "auth", "token": "x", "extra": 1}', 1008),
        ('{"type": "auth", "token": "x", "since_feeds": [1]}', 1008),
        ('{"type": "auth", "token": "x", "since_feeds": {"bob": 1}}', 1008),
        ('{"type": "auth", "token": "x", "since_feeds": {"role:": 1}}', 1008),
        ('{"type": "auth", "token": "x", "since_feeds": {"role:r": -1}}', 1008),
        ('{"type": "auth", "token": "x", "since_feeds": {"role:r": "1"}}', 1008),
        ('{"type": "auth", "token": "x", "since_feeds": {"role:r": 1.5}}', 1008),
        ('{"type": "subscribe"}', 1008),
        ("not json at all", 1008),
        ("[1, 2, 3]", 1008),
        (b"\x00\x01binary", 1008),
    ],
)
async def test_bad_first_message_closes(embedded: Live, frame: str | bytes, code: int) -> None:
    got, _ = await closed(embedded, frame)
    assert got == code


async def test_since_feeds_over_100_feeds_closes_1008_saying_why(embedded: Live) -> None:
    feeds = {f"role:r{i}": 0 for i in range(101)}
    auth = orjson.dumps({"type": "auth", "token": token("alice"), "since_feeds": feeds})
    code, reason = await closed(embedded, auth.decode())
    assert code == 1008 and reason.startswith("bad auth message: since_feeds")


async def test_a_bad_feed_name_in_since_feeds_closes_1008_saying_why(embedded: Live) -> None:
    auth = orjson.dumps({"type": "auth", "token": token("alice"), "since_feeds": {"x:y": 0}})
    code, reason = await closed(embedded, auth.decode())
    assert code == 1008 and "since_feeds" in reason and "not a feed name" in reason


async def test_since_feeds_of_feeds_not_followed_are_ignored(embedded: Live) -> None:
    async with embedded.producer() as p:
        await p.post("/api/v1/tasks", json=task_body("t0"))
    async with FeedClient(embedded.ws_url, token("alice")) as feed:
        feed.seq = feed.count = 1
        first = await feed.connect(since=1, since_feeds={"role:approvers": 3, "user:bob": 0})
    assert first == {
        "type": "synced",
        "seq": 1,
        "count": 1,
        "counts": {"running": 1, "postponed": 0},
        "feeds": {"user:alice": {"seq": 1, "count": 1, "counts": {"running": 1, "postponed": 0}}},
    }


async def test_expired_token_closes_4001(embedded: Live) -> None:
    auth = orjson.dumps({"type": "auth", "token": token("alice", -5)}).decode()
    code, reason = await closed(embedded, auth)
    assert (code, reason) == (4001, "token_expired")


def expires_at(jwt_token: str) -> float:
    """The ``exp`` claim of a token (read without checking it)."""
    claims = jwt.decode(jwt_token, options={"verify_signature": False})
    return float(claims["exp"])


async def until_past(instant: float) -> None:
    """Sleep until the wall clock is past ``instant`` (and a little more)."""
    await asyncio.sleep(max(0.0, instant - time.time()) + 0.2)


async def test_token_expiring_during_the_session_closes_4001(embedded: Live) -> None:
    # ``iat`` is whole seconds: a 2 s token lives more than 1 s, long enough to connect.
    short = token("alice", 2)
    async with FeedClient(embedded.ws_url, short) as feed:
        await feed.connect()
        code, reason = await feed.closed_with(timeout=10)
        closed_at = time.time()
    assert (code, reason) == (4001, "token_expired")
    assert closed_at >= expires_at(short)


async def test_refreshing_the_token_keeps_the_session(embedded: Live) -> None:
    short = token("alice", 2)
    async with FeedClient(embedded.ws_url, short) as feed:
        await feed.connect()
        await feed.send({"type": "auth", "token": token("alice", 3600)})
        # Past the first token's expiry the server's close would already be queued
        # before it reads this ping: a pong means the refresh re-armed the expiry.
        await until_past(expires_at(short))
        await feed.send({"type": "ping"})
        assert await feed.recv() == {"type": "pong"}


async def test_auth_as_someone_else_mid_session_closes_1008(embedded: Live) -> None:
    async with FeedClient(embedded.ws_url, token("alice")) as feed:
        await feed.connect()
        await feed.send({"type": "auth", "token": token("mallory")})
        code, _ = await feed.closed_with()
    assert code == 1008


async def test_unknown_message_after_auth_closes_1008(embedded: Live) -> None:
    async with FeedClient(embedded.ws_url, token("alice")) as feed:
        await feed.connect()
        await feed.send({"type": "delete_everything"})
        code, reason = await feed.closed_with()
    assert code == 1008 and "unknown message type" in reason


async def test_oversized_message_closes_1009(embedded: Live) -> None:
    big = '{"type": "ping", "pad": "' + "x" * 70_000 + '"}'
    code, _ = await closed(embedded, big)
    assert code == 1009


async def test_oversized_message_after_auth_closes_1009(embedded: Live) -> None:
    async with FeedClient(embedded.ws_url, token("alice")) as feed:
        await feed.connect(max_size=None)
        await feed.send("x" * 70_000)
        code, _ = await feed.closed_with()
    assert code == 1009


async def test_slow_client_is_closed_4008_and_others_keep_receiving(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, send_queue_size=60)
    async with serve(settings) as live:
        # A reader with a tiny receive buffer that stops reading after the snapshot.
        slow = StalledClient(live.ws_url, token("alice"))
        await slow.connect_and_stall()
        fast = FeedClient(live.ws_url, token("alice"))
        await fast.connect()
        # Keep producing until the stalled socket's kernel buffers are full and its queue
        # overflows (how much that takes depends on the machine's TCP buffer sizes).
        sent = len(await flood_until_too_slow(live, each_batch=fast.until_seq))
        code, reason = await slow.read_until_close()
        slow.close()
        await fast.close()
        running = await live.parts.reads.running_count("default", "user:alice")
    assert code == 4008 and "since" in reason
    assert fast.count == sent == running


async def test_slow_client_resumes_with_since_and_misses_nothing(sqlite_url: str) -> None:
    # A small send queue so the stalled client overflows soon; a replay limit far above
    # what is produced, so the resume is a replay and not a snapshot.
    settings = make_settings(sqlite_url, send_queue_size=20, replay_limit=1_000_000)
    async with serve(settings) as live:
        async with live.producer() as p:
            for i in range(2):
                await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
        slow = StalledClient(live.ws_url, token("alice"))
        await slow.connect_and_stall()  # it has read the snapshot (seq 2) and no more
        created = ["t0", "t1", *await flood_until_too_slow(live)]
        code, reason = await slow.read_until_close()
        slow.close()
        # The panel resumes from what it had applied: the snapshot at seq 2.
        resumed = FeedClient(live.ws_url, token("alice"))
        resumed.seq, resumed.count = 2, 2
        resumed.tasks = {"t0": {}, "t1": {}}
        first = await resumed.connect(since=2)
        await resumed.close()
    assert (code, reason) == (4008, "too slow: reconnect with since")
    total = len(created)
    assert first == {
        "type": "synced",
        "seq": total,
        "count": total,
        "counts": {"running": total, "postponed": 0},
        "feeds": {
            "user:alice": {
                "seq": total,
                "count": total,
                "counts": {"running": total, "postponed": 0},
            }
        },
    }
    assert [e["seq"] for e in resumed.events] == list(range(3, total + 1))
    assert [e["task"]["id"] for e in resumed.events] == created[2:]
    assert sorted(resumed.tasks) == sorted(created)


async def test_shutdown_closes_sockets_with_1012(sqlite_url: str) -> None:
    feed = FeedClient("", token("alice"))
    async with serve(make_settings(sqlite_url)) as live:
        feed.ws_url = live.ws_url
        await feed.connect()
        waiter = asyncio.create_task(feed.closed_with())
        await asyncio.sleep(0.05)
    code, _ = await waiter
    assert code == 1012


async def test_settings_are_not_shared_between_apps(sqlite_url: str) -> None:
    base = make_settings(sqlite_url)
    assert replace(base, send_queue_size=3).send_queue_size == 3
    assert base.send_queue_size == 1024
