""" "New since you last looked" over the API, on SQLite and PostgreSQL: each person's
marks (the last seq seen of each followed feed) live on the server, only move forward,
reach every socket of theirs as a ``seen`` message, and never touch anyone else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from server.seen import advance
from server.settings import Settings
from tests.support.app import Live, serve, token
from tests.support.audiences import (
    ACME,
    person,
    person_of,
    producer,
    producer_of,
    two_servers,
    two_tenants,
    user_token,
)
from tests.support.client import FeedClient
from tests.support.services import PostgresServer, RedisServer
from tests.support.tasks import assert_error, task_body

SEEN = "/api/v1/me/seen"


async def make_tasks(live: Live, owner: str, *ids: str) -> None:
    async with live.producer() as p:
        for tid in ids:
            r = await p.post("/api/v1/tasks", json=task_body(tid, owner))
            assert r.status_code == 201, r.text


async def seen_of(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get(SEEN)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# ---------------------------------------------------------------- the pure decision


def test_advance_moves_forward_only_up_to_the_head_and_ignores_other_feeds() -> None:
    step = advance(
        {"user:a": 5, "role:r": 2},
        {"user:a": 3, "role:r": 9, "role:gone": 4, "user:new": 1},
        {"user:a": 7, "role:r": 6, "user:new": 0},
    )
    assert step.writes == {"role:r": 6}  # 3 < 5: kept; 9 > head 6: the head; new: head 0
    assert step.ignored == ["role:gone"]


# ---------------------------------------------------------------- reading and marking


async def test_a_person_who_never_looked_has_every_arrival_new(live: Live) -> None:
    await make_tasks(live, "alice", "t1", "t2")
    async with live.person("alice") as alice:
        body = await seen_of(alice)
    assert body["feeds"] == {"user:alice": 0}
    assert body["new"] == [
        {"feed": "user:alice", "task_id": "t2", "seq": 2},
        {"feed": "user:alice", "task_id": "t1", "seq": 1},
    ]


async def test_a_mark_hides_what_came_before_it_and_never_moves_back(live: Live) -> None:
    await make_tasks(live, "alice", "t1", "t2", "t3")
    async with live.person("alice") as alice:
        r = await alice.put(SEEN, json={"feeds": {"user:alice": 2}})
        assert r.status_code == 200, r.text
        assert r.json() == {"feeds": {"user:alice": 2}, "ignored": []}
        assert [n["task_id"] for n in (await seen_of(alice))["new"]] == ["t3"]
        older = await alice.put(SEEN, json={"feeds": {"user:alice": 1}})
        assert older.json()["feeds"] == {"user:alice": 2}  # out of order: kept
        future = await alice.put(SEEN, json={"feeds": {"user:alice": 99}})
        assert future.json()["feeds"] == {"user:alice": 3}  # the feed's head, not 99
        assert (await seen_of(alice)) == {"feeds": {"user:alice": 3}, "new": []}


async def test_a_task_that_comes_back_is_new_again(live: Live) -> None:
    await make_tasks(live, "alice", "t1")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    async with live.person("alice") as alice:
        await alice.put(SEEN, json={"feeds": {"user:alice": 1}})
        assert (await alice.post("/api/v1/tasks/t1/postpone", json={"until": later})).is_success
        assert (await alice.post("/api/v1/tasks/t1/resume")).is_success
        assert (await seen_of(alice))["new"] == [{"feed": "user:alice", "task_id": "t1", "seq": 3}]


async def test_concurrent_marks_keep_the_highest(live: Live) -> None:
    await make_tasks(live, "alice", *(f"t{i}" for i in range(6)))
    async with live.person("alice") as alice:
        answers = await asyncio.gather(
            *(alice.put(SEEN, json={"feeds": {"user:alice": n}}) for n in (3, 6, 1, 5, 2, 4))
        )
        assert all(a.status_code == 200 for a in answers)
        assert (await seen_of(alice))["feeds"] == {"user:alice": 6}


async def test_queues_have_marks_and_feeds_not_followed_are_ignored(live: Live) -> None:
    async with live.producer() as p:
        await p.put("/api/v1/roles/desk/members", json={"members": ["alice"]})
        body = {**task_body("q1"), "owner": None, "role": "desk"}
        assert (await p.post("/api/v1/tasks", json=body)).status_code == 201
    await make_tasks(live, "bob", "b1")
    async with live.person("alice") as alice:
        before = await seen_of(alice)
        assert before["feeds"] == {"user:alice": 0, "role:desk": 0}
        assert before["new"] == [{"feed": "role:desk", "task_id": "q1", "seq": 1}]
        r = await alice.put(
            SEEN, json={"feeds": {"role:desk": 1, "user:bob": 1, "role:elsewhere": 4}}
        )
        assert r.json() == {
            "feeds": {"user:alice": 0, "role:desk": 1},
            "ignored": ["role:elsewhere", "user:bob"],
        }
    async with live.person("bob") as bob:
        assert (await seen_of(bob))["feeds"] == {"user:bob": 0}  # bob's mark untouched


# ---------------------------------------------------------------- every socket of the person


async def test_a_mark_reaches_every_socket_of_the_person_and_no_one_else(live: Live) -> None:
    await make_tasks(live, "alice", "t1", "t2")
    now = datetime.now(UTC)
    async with live.producer() as p:
        sub = {
            "id": "s1",
            "user": "alice",
            "substitute": "cat",
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        }
        assert (await p.post("/api/v1/substitutions", json=sub)).status_code == 201
    tab1, tab2 = FeedClient(live.ws_url, token("alice")), FeedClient(live.ws_url, token("alice"))
    standin, other = FeedClient(live.ws_url, token("cat")), FeedClient(live.ws_url, token("bob"))
    async with tab1, tab2, standin, other:
        for c in (tab1, tab2, standin, other):
            await c.connect()
        async with live.person("alice") as alice:
            assert (await alice.put(SEEN, json={"feeds": {"user:alice": 2}})).status_code == 200
        for tab in (tab1, tab2):
            msg = await tab.recv()
            assert msg == {"type": "seen", "feeds": {"user:alice": 2}}
        # cat follows alice's feed while standing in, but alice's marks are hers alone
        assert [m for m in await standin.before_pong() if m["type"] == "seen"] == []
        assert [m for m in await other.before_pong() if m["type"] == "seen"] == []
        async with live.person("alice") as alice:
            assert (await alice.put(SEEN, json={"feeds": {"user:alice": 1}})).status_code == 200
        assert await tab1.before_pong() == []  # nothing moved: nothing sent


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {},
        {"feeds": []},
        {"feeds": {"user:alice": -1}},
        {"feeds": {"user:alice": "3"}},
        {"feeds": {"user:alice": 1.5}},
        {"feeds": {"user:alice": True}},
        {"feeds": {"user:alice": 2**63}},
        {"feeds": {"nobody": 1}},
        {"feeds": {"user:": 1}},
        {"feeds": {"user:alice": 1}, "extra": 1},
        {"feeds": {f"role:r{i}": 1 for i in range(300)}},
    ],
)
async def test_a_mark_of_the_wrong_shape_is_refused(embedded: Live, payload: object) -> None:
    async with embedded.person("alice") as alice:
        r = await alice.put(SEEN, json=payload)
        assert_error(r, 422)
        assert (await seen_of(alice))["feeds"] == {"user:alice": 0}


async def test_malformed_oversized_and_unauthorized_marks_are_refused(embedded: Live) -> None:
    async with embedded.person("alice") as alice:
        assert_error(await alice.put(SEEN, content=b"{nope"), 400, "malformed_json")
        assert_error(await alice.put(SEEN), 400, "malformed_json")
        big = b'{"feeds": {"user:alice": 1}, "pad": "' + b"x" * 70_000 + b'"}'
        assert_error(await alice.put(SEEN, content=big), 413)
        r = await alice.put(SEEN, content=b"feeds", headers={"content-type": "text/plain"})
        assert_error(r, 415)
    async with httpx.AsyncClient(base_url=embedded.base_url) as anon:
        assert_error(await anon.get(SEEN), 401)
        assert_error(await anon.put(SEEN, json={"feeds": {"user:alice": 1}}), 401)
        bad = {"Authorization": "Bearer not-a-token"}
        assert_error(await anon.put(SEEN, json={"feeds": {}}, headers=bad), 401)
    async with embedded.producer() as p:  # a producer key is not a person
        assert_error(await p.get(SEEN), 401)


# ---------------------------------------------------------------- tenants


@pytest.fixture
async def tenants(backend: Settings) -> AsyncIterator[Live]:
    async with serve(two_tenants(backend)) as running:
        yield running


async def test_another_tenants_person_of_the_same_name_is_never_affected(tenants: Live) -> None:
    async with producer(tenants) as p, producer(tenants, ACME) as q:
        assert (await p.post("/api/v1/tasks", json=task_body("t1", "alice"))).is_success
        for tid in ("t1", "t2", "t3"):
            assert (await q.post("/api/v1/tasks", json=task_body(tid, "alice"))).is_success
    theirs = FeedClient(tenants.ws_url, user_token("alice"))
    async with theirs:
        await theirs.connect()
        async with person(tenants, "alice", ACME) as acme_alice:
            r = await acme_alice.put(SEEN, json={"feeds": {"user:alice": 3}})
            assert r.json()["feeds"] == {"user:alice": 3}
        assert [m for m in await theirs.before_pong() if m["type"] == "seen"] == []
    async with person(tenants, "alice") as alice:
        body = await seen_of(alice)
        assert body == {"feeds": {"user:alice": 0}, "new": [body["new"][0]]}
        assert body["new"][0]["task_id"] == "t1"
        r = await alice.put(SEEN, json={"feeds": {"user:alice": 3}})
        assert r.json()["feeds"] == {"user:alice": 1}  # her own feed's head, not acme's


@pytest.mark.slow
async def test_a_mark_taken_on_one_instance_reaches_sockets_on_another(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    with two_servers(postgres_server, redis_server, "seen") as (a, b, _dsn):
        async with producer_of(a.base_url) as p:
            assert (await p.post("/api/v1/tasks", json=task_body("t1", "alice"))).is_success
        tab = FeedClient(b.ws_url, token("alice"))
        async with tab:
            await tab.connect()
            async with person_of(a.base_url, "alice") as alice:
                r = await alice.put(SEEN, json={"feeds": {"user:alice": 1}})
                assert r.status_code == 200, r.text
            assert await tab.recv() == {"type": "seen", "feeds": {"user:alice": 1}}
            assert await tab.before_pong() == []  # once, not once per path


async def test_the_event_stream_carries_the_mark_without_an_id(embedded: Live) -> None:
    await make_tasks(embedded, "alice", "t1")
    async with (
        httpx.AsyncClient(base_url=embedded.base_url) as http,
        http.stream("GET", "/events", params={"token": token("alice")}, timeout=10) as stream,
    ):
        frames: list[list[str]] = [[]]
        marked = False
        async for line in stream.aiter_lines():
            if line:
                frames[-1].append(line)
                continue
            if frames[-1] and not marked:  # the snapshot is in: mark
                async with embedded.person("alice") as alice:
                    await alice.put(SEEN, json={"feeds": {"user:alice": 1}})
                marked = True
            if any(x == "event: seen" for x in frames[-1]):
                break
            frames.append([])
    seen_frame = frames[-1]
    assert seen_frame == ["event: seen", 'data: {"type":"seen","feeds":{"user:alice":1}}']
