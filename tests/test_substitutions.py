"""Substitutes over HTTP: creating, listing and deleting substitutions; what the
substitute sees and may do while one is in force (and not before, after, or through a
substitute of the substitute); starting and ending by themselves, exactly once across
two server processes."""

from __future__ import annotations

import asyncio
import operator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.app import PRODUCER_KEY, SECRET, Live, make_settings, serve
from tests.support.audiences import (
    at,
    feed_counts,
    feed_ids,
    person,
    person_of,
    producer,
    producer_of,
    queue_body,
    substitution_body,
    two_servers,
    until,
)
from tests.support.server_proc import ServerProcess
from tests.support.services import PostgresServer, RedisServer
from tests.support.tasks import assert_error, task_body

LATER = "2099-01-01T00:00:00Z"


async def seed(live: Live) -> None:
    async with producer(live) as c:
        for tid, owner in (("a1", "alice"), ("a2", "alice"), ("a3", "alice"), ("b1", "bob")):
            assert (await c.post("/api/v1/tasks", json=task_body(tid, owner))).status_code == 201


# ---------------------------------------------------------------- the calls


async def test_post_is_201_a_repeat_200_and_the_same_id_with_other_values_409(
    live: Live,
) -> None:
    body = substitution_body("s-1", "alice", "bob", starts=-60, ends=3600)
    async with producer(live) as c:
        first = await c.post("/api/v1/substitutions", json=body)
        again = await c.post("/api/v1/substitutions", json=body)
        other = await c.post("/api/v1/substitutions", json={**body, "substitute": "carol"})
        later = await c.post("/api/v1/substitutions", json={**body, "ends_at": at(7200)})
    assert first.status_code == 201, first.text
    got = first.json()
    assert (got["id"], got["user"], got["substitute"], got["state"]) == (
        "s-1",
        "alice",
        "bob",
        "active",
    )
    assert datetime.fromisoformat(got["starts_at"]) == datetime.fromisoformat(body["starts_at"])
    assert datetime.fromisoformat(got["ends_at"]) == datetime.fromisoformat(body["ends_at"])
    assert (again.status_code, again.json()) == (200, got)
    assert_error(other, 409, "substitution_id_conflict")
    assert_error(later, 409, "substitution_id_conflict")


async def test_the_same_period_in_another_zone_is_a_repeat(live: Live) -> None:
    body = substitution_body(
        "s-z", "alice", "bob", starts_at="2099-01-01T10:00:00Z", ends_at="2099-01-02T10:00:00Z"
    )
    zoned = {**body, "starts_at": "2099-01-01T12:00:00+02:00", "ends_at": "2099-01-02T05:00-05:00"}
    async with producer(live) as c:
        first = await c.post("/api/v1/substitutions", json=body)
        again = await c.post("/api/v1/substitutions", json=zoned)
    assert first.status_code == 201 and first.json()["state"] == "pending"
    assert (again.status_code, again.json()) == (200, first.json())


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"ends_at": "2099-01-01T00:00:00Z", "starts_at": "2099-01-02T00:00:00Z"}, "invalid"),
        ({"ends_at": "2099-01-01T00:00:00Z", "starts_at": "2099-01-01T00:00:00Z"}, "invalid"),
        ({"substitute": "alice"}, "invalid"),
        ({"starts_at": "2099-01-01T00:00:00"}, "bad_time"),
        ({"ends_at": "2099-01-01 10:00"}, "bad_time"),
        ({"starts_at": 4_000_000_000}, "bad_time"),
        ({"starts_at": "soon"}, "bad_time"),
        ({"reason": "holiday"}, "invalid"),
        ({"state": "active"}, "invalid"),
        ({"user": "a b"}, "invalid"),
        ({"substitute": ""}, "invalid"),
        ({"id": "a/b"}, "invalid"),
        ({"id": None}, "invalid"),
    ],
)
async def test_bad_substitution_bodies_are_422(
    embedded: Live, changes: dict[str, Any], code: str
) -> None:
    body = {**substitution_body("s-bad"), **changes}
    async with producer(embedded) as c:
        resp = await c.post("/api/v1/substitutions", json=body)
        assert_error(resp, 422, code)
        listed = (await c.get("/api/v1/substitutions")).json()
    assert listed == {"substitutions": []}


async def test_missing_fields_and_bodies_that_are_no_json(embedded: Live) -> None:
    async with producer(embedded) as c:
        for field in ("id", "user", "substitute", "starts_at", "ends_at"):
            body = substitution_body("s-x")
            del body[field]
            assert_error(await c.post("/api/v1/substitutions", json=body), 422, "invalid")
        raw = await c.post(
            "/api/v1/substitutions", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert_error(raw, 400, "malformed_json")
        assert_error(await c.post("/api/v1/substitutions", content=b""), 400, "malformed_json")
        big = substitution_body("s-x", user="u" * 200) | {"pad": "x" * 70_000}
        assert_error(await c.post("/api/v1/substitutions", json=big), 413, "payload_too_large")
    async with person(embedded, "alice") as c:
        mine = await c.post("/api/v1/substitutions", json=substitution_body("s-x", "alice"))
        assert_error(mine, 401, "invalid_producer_key")
        assert_error(await c.get("/api/v1/substitutions"), 401, "invalid_producer_key")
        assert_error(await c.delete("/api/v1/substitutions/s-x"), 401, "invalid_producer_key")


async def test_get_lists_by_person_and_delete_is_200_then_404(live: Live) -> None:
    async with producer(live) as c:
        for body in (
            substitution_body("s-1", "alice", "bob", starts=-60, ends=3600),
            substitution_body("s-2", "alice", "carol", starts=7200, ends=9000),
            substitution_body("s-3", "dave", "alice", starts=600, ends=900),
            substitution_body("s-4", "erin", "frank", starts=-60, ends=3600),
            substitution_body("s-old", "alice", "bob", starts=-7200, ends=-3600),
        ):
            assert (await c.post("/api/v1/substitutions", json=body)).status_code == 201

        async def ids(**params: str) -> list[str]:
            resp = await c.get("/api/v1/substitutions", params=params)
            assert resp.status_code == 200, resp.text
            return [s["id"] for s in resp.json()["substitutions"]]

        # by start; one that is over is not listed
        assert await ids() == ["s-1", "s-4", "s-3", "s-2"]
        assert await ids(user="alice") == ["s-1", "s-3", "s-2"]
        assert await ids(user="bob") == ["s-1"]
        assert await ids(user="frank") == ["s-4"]
        assert await ids(user="nobody") == []
        states = {
            s["id"]: s["state"]
            for s in (await c.get("/api/v1/substitutions")).json()["substitutions"]
        }
        assert states == {"s-1": "active", "s-2": "pending", "s-3": "pending", "s-4": "active"}
        assert_error(await c.get("/api/v1/substitutions", params={"user": ""}), 400, "bad_query")

        gone = await c.delete("/api/v1/substitutions/s-1")
        assert gone.status_code == 200, gone.text
        assert (gone.json()["id"], gone.json()["state"]) == ("s-1", "deleted")
        assert_error(await c.delete("/api/v1/substitutions/s-1"), 404, "substitution_not_found")
        assert_error(await c.delete("/api/v1/substitutions/never"), 404, "substitution_not_found")
        assert_error(await c.delete("/api/v1/substitutions/%20"), 404, "substitution_not_found")
        assert await ids(user="alice") == ["s-3", "s-2"]
        # a deleted id may be used again
        again = substitution_body("s-1", "alice", "carol", starts=-60, ends=60)
        assert (await c.post("/api/v1/substitutions", json=again)).status_code == 201


# ---------------------------------------------------------------- the substitute at work


async def test_while_in_force_the_substitute_sees_and_acts_on_the_absent_persons_tasks(
    live: Live,
) -> None:
    await seed(live)
    async with producer(live) as c:
        body = substitution_body("s-1", "alice", "bob", starts=-60, ends=3600)
        assert (await c.post("/api/v1/substitutions", json=body)).status_code == 201
    async with person(live, "bob") as bob:
        assert await feed_ids(bob) == ["a1", "a2", "a3", "b1"]
        own = [t["id"] for t in (await bob.get("/api/v1/me/tasks")).json()["tasks"]]
        assert own == ["b1"], "the default list stays the person's own"
        assert await feed_counts(bob) == {"user:bob": 1, "user:alice": 3, "total": 4}
        assert (await bob.get("/api/v1/me/counts")).json()["running"] == 1
        record = (await bob.get("/api/v1/records/Account/acc-1/tasks")).json()["tasks"]
        assert sorted(t["id"] for t in record) == ["a1", "a2", "a3", "b1"]
        done = await bob.post("/api/v1/tasks/a1/complete")
        assert done.status_code == 200, done.text
        assert (done.json()["owner"], done.json()["acted_by"]) == ("alice", "bob")
        later = await bob.post("/api/v1/tasks/a2/postpone", json={"until": LATER})
        assert (later.json()["status"], later.json()["acted_by"]) == ("postponed", "bob")
        opened = await bob.get("/api/v1/tasks/a3/open")
        assert opened.status_code == 303
    async with person(live, "alice") as alice:
        # the absent person sees nothing of the substitute's own tasks
        assert await feed_ids(alice) == ["a3"]
        assert_error(await alice.post("/api/v1/tasks/b1/complete"), 404, "task_not_found")
        assert await feed_counts(alice) == {"user:alice": 1, "total": 1}
        assert (await alice.get("/api/v1/me/counts")).json() == {
            "running": 1,
            "postponed": 1,
            "completed": 1,
            "canceled": 0,
        }
    async with producer(live) as c:
        assert (await c.get("/api/v1/tasks/a1")).json()["acted_by"] == "bob"
        by_producer = await c.post("/api/v1/tasks/a2/resume")
        assert by_producer.json()["acted_by"] is None


async def test_the_substitute_may_put_back_a_queue_task_the_absent_person_claimed(
    live: Live,
) -> None:
    async with producer(live) as c:
        await c.put("/api/v1/roles/approvers/members", json={"members": ["alice", "bob"]})
        await c.post("/api/v1/tasks", json=queue_body("q-1"))
        assert (await c.post("/api/v1/tasks/q-1/claim", json={"user": "alice"})).status_code == 200
        await c.post("/api/v1/substitutions", json=substitution_body("s-1", "alice", "carol"))
    async with person(live, "carol") as carol:
        assert await feed_ids(carol) == ["q-1"]
        # carol is in no role: she may give it back to the queue, not take it herself
        assert_error(await carol.post("/api/v1/tasks/q-1/claim"), 404, "task_not_found")
        back = await carol.post("/api/v1/tasks/q-1/unclaim")
        assert back.status_code == 200, back.text
        assert (back.json()["owner"], back.json()["acted_by"]) == (None, "carol")
        assert await feed_ids(carol) == []
    async with person(live, "bob") as bob:
        assert await feed_ids(bob) == ["q-1"]


async def test_two_substitutions_for_the_same_pair_end_one_at_a_time(live: Live) -> None:
    await seed(live)
    async with producer(live) as c:
        for sid, ends in (("s-1", 3600), ("s-2", 7200)):
            body = substitution_body(sid, "alice", "bob", ends=ends)
            assert (await c.post("/api/v1/substitutions", json=body)).status_code == 201
        async with person(live, "bob") as bob:
            assert await feed_counts(bob) == {"user:bob": 1, "user:alice": 3, "total": 4}
            assert (await c.delete("/api/v1/substitutions/s-1")).status_code == 200
            assert await feed_ids(bob) == ["a1", "a2", "a3", "b1"], "s-2 is still in force"
            assert (await c.delete("/api/v1/substitutions/s-2")).status_code == 200
            assert await feed_ids(bob) == ["b1"]


@pytest.mark.parametrize("how", ["deleted", "over", "not yet"])
async def test_outside_its_period_the_substitute_gets_404(live: Live, how: str) -> None:
    await seed(live)
    starts, ends = {"deleted": (-60, 3600), "over": (-7200, -60), "not yet": (3600, 7200)}[how]
    async with producer(live) as c:
        body = substitution_body("s-1", "alice", "bob", starts=starts, ends=ends)
        assert (await c.post("/api/v1/substitutions", json=body)).status_code == 201
        if how == "deleted":
            assert (await c.delete("/api/v1/substitutions/s-1")).status_code == 200
    async with person(live, "bob") as bob:
        assert await feed_ids(bob) == ["b1"]
        assert await feed_counts(bob) == {"user:bob": 1, "total": 1}
        for verb in ("complete", "cancel", "resume"):
            assert_error(await bob.post(f"/api/v1/tasks/a1/{verb}"), 404, "task_not_found")
        postpone = await bob.post("/api/v1/tasks/a1/postpone", json={"until": LATER})
        assert_error(postpone, 404, "task_not_found")
        assert_error(await bob.get("/api/v1/tasks/a1/open"), 404, "task_not_found")
    async with producer(live) as c:
        assert (await c.get("/api/v1/tasks/a1")).json()["status"] == "running"


async def test_no_cascading(live: Live) -> None:
    await seed(live)
    async with producer(live) as c:
        await c.post("/api/v1/tasks", json=task_body("c1", "carol"))
        for body in (
            substitution_body("s-1", "alice", "bob"),
            substitution_body("s-2", "bob", "carol"),
        ):
            assert (await c.post("/api/v1/substitutions", json=body)).status_code == 201
    async with person(live, "carol") as carol:
        assert await feed_ids(carol) == ["b1", "c1"]
        assert await feed_counts(carol) == {"user:carol": 1, "user:bob": 1, "total": 2}
        assert_error(await carol.post("/api/v1/tasks/a1/complete"), 404, "task_not_found")
        assert (await carol.post("/api/v1/tasks/b1/complete")).json()["acted_by"] == "carol"
    async with person(live, "bob") as bob:
        assert await feed_ids(bob) == ["a1", "a2", "a3"]


async def test_a_substitute_in_a_role_is_not_the_absent_members_stand_in_there(
    live: Live,
) -> None:
    """Standing in for someone follows their own feed, not their role queues."""
    async with producer(live) as c:
        await c.put("/api/v1/roles/approvers/members", json={"members": ["alice"]})
        queue = task_body("q-1")
        del queue["owner"]
        await c.post("/api/v1/tasks", json={**queue, "role": "approvers"})
        await c.post("/api/v1/substitutions", json=substitution_body("s-1", "alice", "bob"))
    async with person(live, "bob") as bob:
        assert await feed_ids(bob) == []
        assert_error(await bob.post("/api/v1/tasks/q-1/claim"), 404, "task_not_found")
        assert_error(await bob.post("/api/v1/tasks/q-1/complete"), 404, "task_not_found")


async def test_a_substitution_starts_and_ends_by_itself(live: Live) -> None:
    await seed(live)
    async with producer(live) as c:
        body = substitution_body("s-1", "alice", "bob", starts=2, ends=4)
        created = await c.post("/api/v1/substitutions", json=body)
        assert (created.status_code, created.json()["state"]) == (201, "pending")
    starts = datetime.fromisoformat(body["starts_at"])
    ends = datetime.fromisoformat(body["ends_at"])
    async with person(live, "bob") as bob:
        assert await feed_ids(bob) == ["b1"]
        assert_error(await bob.post("/api/v1/tasks/a1/complete"), 404, "task_not_found")
        await until(lambda: feed_ids(bob), lambda ids: "a1" in ids, timeout=10)
        assert datetime.now(starts.tzinfo) >= starts, "in force before its time"
        assert await feed_counts(bob) == {"user:bob": 1, "user:alice": 3, "total": 4}
        done = await bob.post("/api/v1/tasks/a1/complete")
        assert (done.status_code, done.json()["acted_by"]) == (200, "bob")
        await until(lambda: feed_ids(bob), lambda ids: ids == ["b1"], timeout=10)
        assert datetime.now(ends.tzinfo) >= ends, "ended before its time"
        assert_error(await bob.post("/api/v1/tasks/a2/complete"), 404, "task_not_found")
    async with producer(live) as c:
        assert (await c.get("/api/v1/substitutions")).json() == {"substitutions": []}


# ---------------------------------------------------------------- across instances


CROWD = 200  # substitutions moving at the same second: both instances' clocks contend


@pytest.mark.slow
async def test_start_and_end_happen_exactly_once_across_two_processes(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    with two_servers(postgres_server, redis_server, "subs") as (a, b, dsn):
        body = substitution_body("s-1", "alice", "bob", starts=4, ends=7)
        crowd = [
            {**body, "id": f"s-c{i}", "user": f"u{i}", "substitute": f"v{i}"} for i in range(CROWD)
        ]
        async with producer_of(a.base_url) as pa, producer_of(b.base_url) as pb:
            assert (
                await pa.post("/api/v1/tasks", json=task_body("a1", "alice"))
            ).status_code == 201
            assert (await pa.post("/api/v1/substitutions", json=body)).status_code == 201
            for start in range(0, CROWD, 50):
                created = await asyncio.gather(
                    *(
                        (pa, pb)[i % 2].post("/api/v1/substitutions", json=crowd[i])
                        for i in range(start, start + 50)
                    )
                )
                assert {r.status_code for r in created} == {201}
        async with person_of(b.base_url, "bob") as bob_b, person_of(a.base_url, "bob") as bob_a:
            for wanted in (["a1"], []):  # in force on both instances, then over on both
                for bob in (bob_b, bob_a):
                    await until(partial(feed_ids, bob), partial(operator.eq, wanted), timeout=10)
        async with producer_of(b.base_url) as c:
            listed = await c.get("/api/v1/substitutions")
            assert listed.json() == {"substitutions": []}
        # a second instance that also moved one would have done so by now: give it the time
        await asyncio.sleep(1.5)
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT user_id, at FROM audience_change WHERE tenant = 'default' ORDER BY id"
            )
            states = await conn.fetch("SELECT DISTINCT state FROM substitution")
        finally:
            await conn.close()
    assert [r["state"] for r in states] == ["ended"]
    per_person: dict[str, list[datetime]] = {}
    for r in rows:
        per_person.setdefault(r["user_id"], []).append(r["at"])
    twice = {p: len(ats) for p, ats in per_person.items() if len(ats) != 2}
    assert twice == {}, "each start and each end is logged exactly once"
    assert sorted(per_person) == sorted(["bob", *(f"v{i}" for i in range(CROWD))])
    start_row, end_row = per_person["bob"]
    assert start_row >= datetime.fromisoformat(body["starts_at"])
    assert end_row >= datetime.fromisoformat(body["ends_at"])


async def test_deleting_a_substitution_the_clock_is_starting_ends_it_for_the_substitute(
    pg_url: str,
) -> None:
    """The clock starts a substitution (its transaction holds the row) while a DELETE
    comes: the DELETE must see it in force once the clock commits, and log the end, or
    the substitute's sockets would keep following the absent person's feed."""
    async with serve(make_settings(pg_url)) as live, producer(live) as c:
        body = substitution_body("s-1", "alice", "bob", starts=3600, ends=7200)
        assert (await c.post("/api/v1/substitutions", json=body)).status_code == 201
        clock = create_async_engine(live.settings.database_url)
        try:
            async with clock.begin() as conn:  # what move_substitutions does, held open
                await conn.execute(text("SELECT * FROM substitution WHERE id = 's-1' FOR UPDATE"))
                await conn.execute(
                    text("UPDATE substitution SET state = 'active' WHERE id = 's-1'")
                )
                await conn.execute(
                    text(
                        "INSERT INTO audience_change (tenant, user_id, at) "
                        "VALUES ('default', 'bob', now())"
                    )
                )
                deleting = asyncio.create_task(c.delete("/api/v1/substitutions/s-1"))
                await asyncio.sleep(0.5)
                assert not deleting.done(), "the DELETE must wait for the clock's row"
            gone = await deleting
            assert gone.status_code == 200, gone.text
            async with clock.connect() as conn:
                rows = await conn.execute(text("SELECT user_id FROM audience_change ORDER BY id"))
                logged = [str(r[0]) for r in rows]
        finally:
            await clock.dispose()
    assert logged == ["bob", "bob"], "the start, then the end"


async def test_a_substitution_due_while_the_server_was_down_starts_and_ends_at_start(
    tmp_path: Path,
) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/subs.db",
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
    }
    server = ServerProcess(env)
    await asyncio.to_thread(server.start)
    headers = {"Authorization": f"Bearer {PRODUCER_KEY}"}
    try:
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as p:
            now = datetime.now(UTC)
            for sid, start, end in (("s-start", 1, 3600), ("s-over", 1, 2)):
                body = {
                    "id": sid,
                    "user": "ann",
                    "substitute": "ben",
                    "starts_at": (now + timedelta(seconds=start)).isoformat(),
                    "ends_at": (now + timedelta(seconds=end)).isoformat(),
                }
                assert (await p.post("/api/v1/substitutions", json=body)).status_code == 201
            await asyncio.to_thread(server.stop)
            # Start again only once both times have passed, however long the stop took.
            await asyncio.sleep(max(0.0, (now - datetime.now(UTC)).total_seconds() + 2.2))
            await asyncio.to_thread(server.start)
            states: dict[str, str] = {}
            for _ in range(100):
                listed = (await p.get("/api/v1/substitutions")).json()["substitutions"]
                states = {s["id"]: s["state"] for s in listed}
                if states == {"s-start": "active"}:
                    break
                await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(server.stop)
    # the one still in force started; the one whose time is over ended (not listed)
    assert states == {"s-start": "active"}
