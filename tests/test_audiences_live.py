"""Audiences live, end to end over real sockets: membership changes and substitutions
reach open sockets on every instance, claims leave every other member's queue, and two
tenants using the same ids see nothing of each other (WebSocket and event stream)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from server.auth import mint_token
from tests.support.app import PRODUCER_KEY, SECRET, make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.server_proc import ServerProcess
from tests.support.services import PostgresServer, RedisServer
from tests.support.tasks import task_body
from tests.test_scaleout import server_env

ACME_KEY = "pk-acme-0123456789"


def queued(tid: str, role: str = "desk") -> dict[str, Any]:
    return {**task_body(tid), "owner": None, "role": role}


def acme_token(user: str) -> str:
    return mint_token(SECRET, user, 3600, tenant="acme")


def client(base_url: str, key: str = PRODUCER_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"})


async def next_of(c: FeedClient, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next message of ``kind`` (others are applied and checked on the way)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await c.recv(max(0.01, deadline - loop.time()))
        if msg["type"] == kind:
            return msg


@pytest.fixture
def pair(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    db_url = postgres_server.create_database(f"aud_{random.randrange(16**8):08x}")
    env = server_env(db_url, redis_server.url)
    env["TASKBELL_PRODUCER_KEYS"] = f"{PRODUCER_KEY},acme={ACME_KEY}"
    with ServerProcess(env) as a, ServerProcess(env) as b:
        a.wait_ready()
        b.wait_ready()
        yield a, b


@pytest.mark.slow
async def test_membership_claims_and_substitutions_reach_sockets_on_every_instance(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    async with client(a.base_url) as pa:
        assert (
            await pa.put("/api/v1/roles/desk/members", json={"members": ["ann"]})
        ).status_code == 200
        assert (await pa.post("/api/v1/tasks", json=queued("q1"))).status_code == 201
    ann = FeedClient(b.ws_url, token("ann"))
    ben = FeedClient(a.ws_url, token("ben"))
    cat = FeedClient(b.ws_url, token("cat"))
    for c in (ann, ben, cat):
        await c.connect()
    assert set(ann.others) == {"role:desk"} and set(ann.others["role:desk"].tasks) == {"q1"}
    assert ben.others == {}

    # A membership added on instance a reaches ben's socket (on a) and a change made
    # through b reaches sockets on a: within a couple of seconds (the log is polled
    # every second).
    async with client(b.base_url) as pb:
        r = await pb.put("/api/v1/roles/desk/members", json={"members": ["ann", "ben"]})
        assert r.status_code == 200
    joined = await next_of(ben, "feed.joined")
    assert joined["feed"] == "role:desk" and [t["id"] for t in joined["tasks"]] == ["q1"]

    # A queue task created through b reaches both members (one on each instance).
    async with client(b.base_url) as pb:
        assert (await pb.post("/api/v1/tasks", json=queued("q2"))).status_code == 201
    for c in (ann, ben):
        added = await next_of(c, "task.added")
        assert (added["feed"], added["task"]["id"]) == ("role:desk", "q2")

    # ben claims q2 through instance b; ann's queue loses it, ben's own feed gets it.
    async with httpx.AsyncClient(
        base_url=b.base_url, headers={"Authorization": f"Bearer {token('ben')}"}
    ) as ben_http:
        assert (await ben_http.post("/api/v1/tasks/q2/claim")).status_code == 200
    gone = await next_of(ann, "task.removed")
    assert (gone["feed"], gone["task"]["id"], gone["reason"]) == ("role:desk", "q2", "claimed")
    await ben.until_seq(1)
    assert set(ben.tasks) == {"q2"} and "q2" not in ben.others["role:desk"].tasks

    # ann leaves the role: her socket gets feed.left and nothing of the role after it.
    async with client(a.base_url) as pa:
        assert (
            await pa.put("/api/v1/roles/desk/members", json={"members": ["ben"]})
        ).status_code == 200
    left = await next_of(ann, "feed.left")
    assert left == {"type": "feed.left", "feed": "role:desk"}
    async with client(a.base_url) as pa:
        assert (await pa.post("/api/v1/tasks", json=queued("q3"))).status_code == 201
    await next_of(ben, "task.added")
    assert [m for m in await ann.before_pong() if m.get("feed") == "role:desk"] == []

    # cat stands in for ben from two seconds from now, for three seconds.
    now = datetime.now(UTC)
    sub = {
        "id": "s1",
        "user": "ben",
        "substitute": "cat",
        "starts_at": (now + timedelta(seconds=2)).isoformat(),
        "ends_at": (now + timedelta(seconds=5)).isoformat(),
    }
    async with client(a.base_url) as pa:
        assert (await pa.post("/api/v1/substitutions", json=sub)).status_code == 201
    started = await next_of(cat, "feed.joined", timeout=8)
    assert started["feed"] == "user:ben" and {t["id"] for t in started["tasks"]} == {"q2"}
    # While in force cat may complete ben's task; acted_by says who did.
    async with httpx.AsyncClient(
        base_url=b.base_url, headers={"Authorization": f"Bearer {token('cat')}"}
    ) as cat_http:
        done = await cat_http.post("/api/v1/tasks/q2/complete")
        assert done.status_code == 200 and done.json()["acted_by"] == "cat"
    ended = await next_of(cat, "feed.left", timeout=8)
    assert ended == {"type": "feed.left", "feed": "user:ben"}
    async with httpx.AsyncClient(
        base_url=a.base_url, headers={"Authorization": f"Bearer {token('cat')}"}
    ) as cat_http:
        assert (await cat_http.post("/api/v1/tasks/q3/complete")).status_code == 404
    for c in (ann, ben, cat):
        await c.close()


async def test_two_tenants_with_the_same_ids_see_nothing_of_each_other(sqlite_url: str) -> None:
    settings = make_settings(
        sqlite_url, producer_keys=frozenset({PRODUCER_KEY, f"acme={ACME_KEY}"})
    )
    async with serve(settings) as live:
        # The same role, people and task ids in both tenants; only default's change later.
        for key in (PRODUCER_KEY, ACME_KEY):
            async with client(live.base_url, key) as p:
                r = await p.put("/api/v1/roles/desk/members", json={"members": ["ann"]})
                assert r.status_code == 200
                assert (
                    await p.post("/api/v1/tasks", json=task_body("t1", "ann"))
                ).status_code == 201
                assert (await p.post("/api/v1/tasks", json=queued("q1"))).status_code == 201
        own = FeedClient(live.ws_url, token("ann"))
        other = FeedClient(live.ws_url, acme_token("ann"))
        await own.connect()
        snap = await other.connect()
        assert list(snap["feeds"]) == ["user:ann", "role:desk"]
        assert sorted(t["id"] for t in snap["tasks"]) == ["q1", "t1"]
        async with client(live.base_url) as p:
            assert (await p.post("/api/v1/tasks", json=task_body("t2", "ann"))).status_code == 201
            assert (await p.post("/api/v1/tasks", json=queued("q2"))).status_code == 201
            assert (await p.post("/api/v1/tasks/t1/complete")).status_code == 200
        await own.until_seq(3)
        assert own.others["role:desk"].seq == 2
        assert [m for m in await other.before_pong() if m["type"].startswith("task.")] == []
        assert (other.seq, other.count, set(other.tasks)) == (1, 1, {"t1"})
        # acme's ann over the event stream: acme's tasks only.
        async with (
            httpx.AsyncClient(base_url=live.base_url) as http,
            http.stream("GET", "/events", params={"token": acme_token("ann")}, timeout=5) as stream,
        ):
            lines: list[str] = []
            async for line in stream.aiter_lines():
                lines.append(line)
                if line == "" and any(x.startswith("data:") for x in lines):
                    break
        data = [orjson.loads(x[len("data:") :]) for x in lines if x.startswith("data:")]
        assert data[0]["type"] == "snapshot"
        assert sorted(t["id"] for t in data[0]["tasks"]) == ["q1", "t1"]
        assert all(t["status"] == "running" for t in data[0]["tasks"])
        await own.close()
        await other.close()
