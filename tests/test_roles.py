"""Role queues over HTTP: members, queue tasks, claiming (and its race), unclaiming,
acting on a queue task without claiming it, moving it between roles."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy import select

from server.models import audience_t, event_t
from tests.support.app import Live
from tests.support.audiences import (
    feed_counts,
    feed_ids,
    person,
    person_of,
    producer,
    producer_of,
    queue_body,
    two_servers,
)
from tests.support.services import PostgresServer, RedisServer
from tests.support.tasks import assert_error, task_body

MEMBERS = ["alice", "bob", "carol"]


async def setup_queue(live: Live, members: list[str] = MEMBERS, tid: str = "q-1") -> None:
    async with producer(live) as c:
        put = await c.put("/api/v1/roles/approvers/members", json={"members": members})
        assert put.status_code == 200, put.text
        created = await c.post("/api/v1/tasks", json=queue_body(tid))
        assert created.status_code == 201, created.text


# ---------------------------------------------------------------- members


async def test_put_members_sets_them_and_a_repeat_changes_nothing(live: Live) -> None:
    async with producer(live) as c:
        first = await c.put(
            "/api/v1/roles/approvers/members", json={"members": ["carol", "alice", "bob", "alice"]}
        )
        again = await c.put(
            "/api/v1/roles/approvers/members", json={"members": ["carol", "alice", "bob"]}
        )
        got = await c.get("/api/v1/roles/approvers")
        smaller = await c.put("/api/v1/roles/approvers/members", json={"members": ["bob"]})
        empty = await c.put("/api/v1/roles/empty/members", json={"members": []})
        got_empty = await c.get("/api/v1/roles/empty")
    expected = {"id": "approvers", "members": ["alice", "bob", "carol"]}
    assert (first.status_code, first.json()) == (200, expected)
    assert (again.status_code, again.json()) == (200, expected)
    assert (got.status_code, got.json()) == (200, expected)
    assert smaller.json() == {"id": "approvers", "members": ["bob"]}
    assert (empty.status_code, got_empty.json()) == (200, {"id": "empty", "members": []})
    assert got.headers["content-type"].startswith("application/json")


async def test_an_unknown_role_is_404(live: Live) -> None:
    async with producer(live) as c:
        assert_error(await c.get("/api/v1/roles/nobody-here"), 404, "role_not_found")
        # a role id that could never be one answers the same way
        assert_error(await c.get("/api/v1/roles/%20"), 404, "role_not_found")


async def test_roles_are_the_producers_business(embedded: Live) -> None:
    async with person(embedded, "alice") as c:
        put = await c.put("/api/v1/roles/approvers/members", json={"members": ["alice"]})
        assert_error(put, 401, "invalid_producer_key")
        assert_error(await c.get("/api/v1/roles/approvers"), 401, "invalid_producer_key")
    async with httpx.AsyncClient(base_url=embedded.base_url) as anonymous:
        put = await anonymous.put("/api/v1/roles/approvers/members", json={"members": []})
        assert_error(put, 401, "missing_credentials")


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b'{"members": "alice"}', 422, "invalid"),
        (b'{"members": {"alice": true}}', 422, "invalid"),
        (b'["alice"]', 422, "invalid"),
        (b"{}", 422, "invalid"),
        (b'{"members": ["a b"]}', 422, "invalid"),
        (b'{"members": [""]}', 422, "invalid"),
        (b'{"members": [5]}', 422, "invalid"),
        (b'{"members": [null]}', 422, "invalid"),
        (b'{"members": ["al\\u0000ice"]}', 422, "invalid"),
        (b'{"members": ["alice"], "admins": ["bob"]}', 422, "invalid"),
        (b'{"members": ["alice"], "members": ["bob"]}', 400, "duplicate_key"),
        (b'{"members": ["alice"', 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b"null", 400, "malformed_json"),
        (b'{"members": [' + b'"a",' * 10_000 + b'"a"]}', 422, "invalid"),
        (b'{"members": ["' + b"x" * 201 + b'"]}', 422, "invalid"),
        (b'{"members": [' + b",".join(b'"u%05d"' % i for i in range(9000)) + b"]}", 413, None),
    ],
)
async def test_bad_member_bodies_are_refused(
    embedded: Live, raw: bytes, status: int, code: str | None
) -> None:
    async with producer(embedded) as c:
        resp = await c.put(
            "/api/v1/roles/approvers/members",
            content=raw,
            headers={"Content-Type": "application/json"},
        )
        assert_error(resp, status, code or "payload_too_large")
        assert_error(await c.get("/api/v1/roles/approvers"), 404, "role_not_found")


async def test_a_member_body_that_is_not_json_typed_is_415(embedded: Live) -> None:
    async with producer(embedded) as c:
        resp = await c.put(
            "/api/v1/roles/approvers/members",
            content=b'{"members": []}',
            headers={"Content-Type": "text/plain"},
        )
    assert_error(resp, 415)


# ---------------------------------------------------------------- queue tasks


@pytest.mark.parametrize(
    "changes",
    [
        {"role": "approvers"},  # both an owner and a role
        {"owner": None},  # neither
        {"owner": None, "role": None},
        {"role": ""},
        {"role": "a b"},
        # a role the path /roles/{role} could never name, so nobody could ever be in it
        {"owner": None, "role": "a/b"},
        {"owner": None, "role": "r" * 201},
    ],
)
async def test_a_task_needs_exactly_one_of_owner_and_role(
    embedded: Live, changes: dict[str, Any]
) -> None:
    async with producer(embedded) as c:
        resp = await c.post("/api/v1/tasks", json=task_body("x", **changes))
        assert_error(resp, 422, "invalid")
        assert_error(await c.get("/api/v1/tasks/x"), 404, "task_not_found")


async def test_a_patch_cannot_give_a_role_no_path_could_name(embedded: Live) -> None:
    await setup_queue(embedded)
    async with producer(embedded) as c:
        assert_error(await c.patch("/api/v1/tasks/q-1", json={"role": "a/b"}), 422, "invalid")
        assert (await c.get("/api/v1/tasks/q-1")).json()["role"] == "approvers"


async def test_an_explicit_null_owner_with_a_role_is_a_queue_task(embedded: Live) -> None:
    async with producer(embedded) as c:
        resp = await c.post(
            "/api/v1/tasks", json={**task_body("q-n"), "owner": None, "role": "approvers"}
        )
    assert resp.status_code == 201, resp.text
    assert (resp.json()["owner"], resp.json()["role"]) == (None, "approvers")


async def test_membership_changes_log_exactly_the_people_whose_feeds_changed(live: Live) -> None:
    async def logged() -> list[str]:
        async with live.parts.reads.engines.reader.connect() as conn:
            rows = await conn.execute(select(audience_t.c.user_id).order_by(audience_t.c.id))
            return [str(r[0]) for r in rows]

    async with producer(live) as c:
        await c.put("/api/v1/roles/approvers/members", json={"members": ["bob", "alice"]})
        assert await logged() == ["alice", "bob"]
        await c.put("/api/v1/roles/approvers/members", json={"members": ["alice", "bob"]})
        assert await logged() == ["alice", "bob"], "a repeat changes nobody's feeds"
        await c.put("/api/v1/roles/approvers/members", json={"members": ["bob", "carol"]})
        assert await logged() == ["alice", "bob", "alice", "carol"]


async def test_a_queue_task_is_in_every_members_queue_and_nobody_elses(live: Live) -> None:
    await setup_queue(live)
    async with producer(live) as c:
        got = (await c.get("/api/v1/tasks/q-1")).json()
    assert (got["owner"], got["role"], got["acted_by"], got["status"]) == (
        None,
        "approvers",
        None,
        "running",
    )
    for member in MEMBERS:
        async with person(live, member) as c:
            assert await feed_ids(c) == ["q-1"]
            own = (await c.get("/api/v1/me/tasks")).json()["tasks"]
            assert own == [], "the default list is the person's own tasks"
            counts = await feed_counts(c)
            assert counts == {f"user:{member}": 0, "role:approvers": 1, "total": 1}
            record = (await c.get("/api/v1/records/Account/acc-1/tasks")).json()["tasks"]
            assert [t["id"] for t in record] == ["q-1"]
    async with person(live, "dave") as c:
        assert await feed_ids(c) == []
        assert await feed_counts(c) == {"user:dave": 0, "total": 0}
        assert_error(await c.post("/api/v1/tasks/q-1/complete"), 404, "task_not_found")


async def test_a_member_claims_it_and_it_moves_from_the_queue_to_their_feed(live: Live) -> None:
    await setup_queue(live)
    async with person(live, "bob") as bob:
        claimed = await bob.post("/api/v1/tasks/q-1/claim")
        assert claimed.status_code == 200, claimed.text
        task = claimed.json()
        assert (task["owner"], task["role"], task["acted_by"]) == ("bob", "approvers", "bob")
        assert await feed_counts(bob) == {"user:bob": 1, "role:approvers": 0, "total": 1}
        assert [t["id"] for t in (await bob.get("/api/v1/me/tasks")).json()["tasks"]] == ["q-1"]
        # the winner claiming again: 200 and nothing changes
        again = await bob.post("/api/v1/tasks/q-1/claim", json={})
        assert (again.status_code, again.json()) == (200, task)
        counter = (await bob.get("/api/v1/me/counter")).json()
        assert counter["feeds"]["user:bob"] == {
            "seq": 1,
            "count": 1,
            "counts": {"running": 1, "postponed": 0},
        }
        assert counter["feeds"]["role:approvers"] == {
            "seq": 2,
            "count": 0,
            "counts": {"running": 0, "postponed": 0},
        }
    for member in ("alice", "carol"):
        async with person(live, member) as c:
            assert await feed_counts(c) == {f"user:{member}": 0, "role:approvers": 0, "total": 0}
            assert await feed_ids(c) == []
            assert_error(await c.post("/api/v1/tasks/q-1/claim"), 409, "already_claimed")
    async with person(live, "dave") as dave:
        assert_error(await dave.post("/api/v1/tasks/q-1/claim"), 404, "task_not_found")
        assert_error(await dave.post("/api/v1/tasks/nope/claim"), 404, "task_not_found")
    async with producer(live) as c:
        stored = (await c.get("/api/v1/tasks/q-1")).json()
    assert stored == task


async def test_a_producer_claims_for_a_member(live: Live) -> None:
    await setup_queue(live)
    async with producer(live) as c:
        assert_error(await c.post("/api/v1/tasks/q-1/claim"), 422, "claim_needs_user")
        assert_error(await c.post("/api/v1/tasks/q-1/claim", json={}), 422, "claim_needs_user")
        outsider = await c.post("/api/v1/tasks/q-1/claim", json={"user": "dave"})
        assert_error(outsider, 422, "not_a_member")
        assert_error(await c.post("/api/v1/tasks/q-1/claim", json={"user": "a b"}), 422)
        assert_error(await c.post("/api/v1/tasks/q-1/claim", json={"who": "alice"}), 422)
        assert_error(await c.post("/api/v1/tasks/nope/claim", json={"user": "alice"}), 404)
        done = await c.post("/api/v1/tasks/q-1/claim", json={"user": "carol"})
        assert done.status_code == 200, done.text
        assert (done.json()["owner"], done.json()["acted_by"]) == ("carol", None)
        late = await c.post("/api/v1/tasks/q-1/claim", json={"user": "alice"})
        assert_error(late, 409, "already_claimed")
    async with person(live, "carol") as carol:
        assert await feed_counts(carol) == {"user:carol": 1, "role:approvers": 0, "total": 1}


async def test_a_person_claims_for_themselves_only(live: Live) -> None:
    await setup_queue(live)
    async with person(live, "alice") as alice:
        other = await alice.post("/api/v1/tasks/q-1/claim", json={"user": "bob"})
        assert_error(other, 422, "claim_for_other")
        self_named = await alice.post("/api/v1/tasks/q-1/claim", json={"user": "alice"})
        assert self_named.status_code == 200 and self_named.json()["owner"] == "alice"
    async with producer(live) as c:
        await c.post("/api/v1/tasks", json=queue_body("q-2"))
    async with person(live, "bob") as bob:
        # no body, {} and a body of white space all mean "for myself"
        blank = await bob.post(
            "/api/v1/tasks/q-2/claim", content=b" \n", headers={"Content-Type": "application/json"}
        )
        assert blank.status_code == 200, blank.text
        assert blank.json()["owner"] == "bob"


async def test_a_task_of_no_role_cannot_be_claimed(live: Live) -> None:
    async with producer(live) as c:
        await c.post("/api/v1/tasks", json=task_body("own", "alice"))
        await c.put("/api/v1/roles/approvers/members", json={"members": ["alice", "bob"]})
        resp = await c.post("/api/v1/tasks/own/claim", json={"user": "alice"})
        assert_error(resp, 409, "not_a_queue_task")
        assert_error(await c.post("/api/v1/tasks/own/unclaim"), 409, "not_a_queue_task")
    async with person(live, "alice") as alice:
        assert_error(await alice.post("/api/v1/tasks/own/claim"), 409, "not_a_queue_task")
    async with person(live, "bob") as bob:  # somebody else's own task: not found
        assert_error(await bob.post("/api/v1/tasks/own/claim"), 404, "task_not_found")


async def test_unclaim_puts_it_back_in_the_queue(live: Live) -> None:
    await setup_queue(live)
    async with person(live, "alice") as alice, person(live, "bob") as bob:
        assert (await alice.post("/api/v1/tasks/q-1/claim")).status_code == 200
        # another member may not put back what alice holds
        assert_error(await bob.post("/api/v1/tasks/q-1/unclaim"), 404, "task_not_found")
        back = await alice.post("/api/v1/tasks/q-1/unclaim")
        assert back.status_code == 200, back.text
        assert (back.json()["owner"], back.json()["role"]) == (None, "approvers")
        assert await feed_counts(alice) == {"user:alice": 0, "role:approvers": 1, "total": 1}
        assert await feed_ids(bob) == ["q-1"]
        # unclaiming what is in the queue already changes nothing
        again = await alice.post("/api/v1/tasks/q-1/unclaim")
        assert (again.status_code, again.json()) == (200, back.json())
        assert_error(await alice.post("/api/v1/tasks/q-1/unclaim", json={"x": 1}), 422)
        assert (await bob.post("/api/v1/tasks/q-1/claim")).status_code == 200
    async with producer(live) as c:
        by_producer = await c.post("/api/v1/tasks/q-1/unclaim")
        assert by_producer.status_code == 200
        assert (by_producer.json()["owner"], by_producer.json()["acted_by"]) == (None, None)
    async with person(live, "carol") as carol:
        counter = (await carol.get("/api/v1/me/counter")).json()
        # added, claimed by alice, back, claimed by bob, back: five seqs, one task
        assert counter["feeds"]["role:approvers"] == {
            "seq": 5,
            "count": 1,
            "counts": {"running": 1, "postponed": 0},
        }
    async with person(live, "bob") as bob:
        assert (await bob.get("/api/v1/me/counter")).json()["feeds"]["user:bob"] == {
            "seq": 2,
            "count": 0,
            "counts": {"running": 0, "postponed": 0},
        }


async def test_a_member_may_act_on_a_queue_task_without_claiming_it(live: Live) -> None:
    await setup_queue(live, tid="q-1")
    async with producer(live) as c:
        assert (await c.post("/api/v1/tasks", json=queue_body("q-2"))).status_code == 201
        assert (await c.post("/api/v1/tasks", json=queue_body("q-3"))).status_code == 201
    async with person(live, "alice") as alice, person(live, "bob") as bob:
        done = await alice.post("/api/v1/tasks/q-1/complete")
        assert done.status_code == 200, done.text
        assert (done.json()["status"], done.json()["acted_by"]) == ("completed", "alice")
        assert done.json()["owner"] is None
        later = await bob.post("/api/v1/tasks/q-2/postpone", json={"until": "2099-01-01T00:00:00Z"})
        assert later.status_code == 200, later.text
        assert (later.json()["status"], later.json()["acted_by"]) == ("postponed", "bob")
        assert await feed_ids(alice, "postponed") == ["q-2"]
        back = await alice.post("/api/v1/tasks/q-2/resume")
        assert (back.json()["status"], back.json()["acted_by"]) == ("running", "alice")
        gone = await bob.post("/api/v1/tasks/q-3/cancel")
        assert (gone.json()["status"], gone.json()["acted_by"]) == ("canceled", "bob")
        assert await feed_counts(alice) == {"user:alice": 0, "role:approvers": 1, "total": 1}
        # a completed queue task cannot be claimed any more
        assert_error(await bob.post("/api/v1/tasks/q-1/claim"), 409, "illegal_transition")
    async with person(live, "dave") as dave:
        assert_error(await dave.post("/api/v1/tasks/q-2/complete"), 404, "task_not_found")


async def test_patching_the_role_moves_a_queue_task_between_queues(live: Live) -> None:
    async with producer(live) as c:
        await c.put("/api/v1/roles/approvers/members", json={"members": ["alice"]})
        await c.put("/api/v1/roles/reviewers/members", json={"members": ["bob"]})
        await c.post("/api/v1/tasks", json=queue_body("q-1"))
        moved = await c.patch("/api/v1/tasks/q-1", json={"role": "reviewers"})
        assert moved.status_code == 200, moved.text
        assert (moved.json()["owner"], moved.json()["role"]) == (None, "reviewers")
        lost = await c.patch("/api/v1/tasks/q-1", json={"role": None})
        assert_error(lost, 422, "no_audience")
    async with person(live, "alice") as alice, person(live, "bob") as bob:
        assert await feed_ids(alice) == []
        assert await feed_ids(bob) == ["q-1"]
        a = (await alice.get("/api/v1/me/counter")).json()["feeds"]["role:approvers"]
        b = (await bob.get("/api/v1/me/counter")).json()["feeds"]["role:reviewers"]
        assert (a, b) == (
            {"seq": 2, "count": 0, "counts": {"running": 0, "postponed": 0}},
            {"seq": 1, "count": 1, "counts": {"running": 1, "postponed": 0}},
        )
        assert_error(await alice.post("/api/v1/tasks/q-1/claim"), 404, "task_not_found")
        assert (await bob.post("/api/v1/tasks/q-1/claim")).status_code == 200
    async with producer(live) as c:
        # an owner given by PATCH to a queue task: it leaves the queue for that person
        await c.post("/api/v1/tasks/q-1/unclaim")
        given = await c.patch("/api/v1/tasks/q-1", json={"owner": "carol"})
        assert (given.json()["owner"], given.json()["role"]) == ("carol", "reviewers")
    async with person(live, "bob") as bob, person(live, "carol") as carol:
        assert await feed_counts(bob) == {"user:bob": 0, "role:reviewers": 0, "total": 0}
        assert await feed_counts(carol) == {"user:carol": 1, "total": 1}


async def test_a_former_member_loses_the_queue(live: Live) -> None:
    await setup_queue(live)
    async with producer(live) as c:
        await c.put("/api/v1/roles/approvers/members", json={"members": ["bob"]})
    async with person(live, "alice") as alice:
        assert await feed_ids(alice) == []
        assert await feed_counts(alice) == {"user:alice": 0, "total": 0}
        for verb in ("claim", "complete", "cancel"):
            assert_error(await alice.post(f"/api/v1/tasks/q-1/{verb}"), 404, "task_not_found")
        assert_error(await alice.get("/api/v1/tasks/q-1/open"), 404, "task_not_found")
        record = (await alice.get("/api/v1/records/Account/acc-1/tasks")).json()["tasks"]
        assert record == []
    async with producer(live) as c:
        assert_error(
            await c.post("/api/v1/tasks/q-1/claim", json={"user": "alice"}), 422, "not_a_member"
        )
        assert (await c.get("/api/v1/tasks/q-1")).json()["owner"] is None


# ---------------------------------------------------------------- the race


async def claim_race(
    urls: list[str], tid: str, members: list[str]
) -> list[tuple[str, httpx.Response]]:
    """Every member claims ``tid`` at once (spread over ``urls``), after all are connected."""
    clients = [person_of(urls[i % len(urls)], m) for i, m in enumerate(members)]
    try:
        for c in clients:  # open the connections first, so the claims leave together
            assert (await c.get("/api/v1/me/counter")).status_code == 200
        go = asyncio.Event()

        async def one(c: httpx.AsyncClient) -> httpx.Response:
            await go.wait()
            return await c.post(f"/api/v1/tasks/{tid}/claim")

        pending = [asyncio.create_task(one(c)) for c in clients]
        await asyncio.sleep(0.05)
        go.set()
        answers = await asyncio.gather(*pending)
    finally:
        for c in clients:
            await c.aclose()
    return list(zip(members, answers, strict=True))


def one_winner(answers: list[tuple[str, httpx.Response]]) -> str:
    winners = [m for m, r in answers if r.status_code == 200]
    assert len(winners) == 1, [(m, r.status_code, r.text[:80]) for m, r in answers]
    for _, r in answers:
        if r.status_code != 200:
            assert_error(r, 409, "already_claimed")
    return winners[0]


RACERS = [f"m{i:02d}" for i in range(20)]


async def test_twenty_members_claim_at_once_and_exactly_one_wins(live: Live) -> None:
    await setup_queue(live, RACERS)
    winner = one_winner(await claim_race([live.base_url], "q-1", RACERS))
    async with producer(live) as c:
        assert (await c.get("/api/v1/tasks/q-1")).json()["owner"] == winner
    async with person(live, winner) as w:
        counter = (await w.get("/api/v1/me/counter")).json()
        assert counter["feeds"][f"user:{winner}"] == {
            "seq": 1,
            "count": 1,
            "counts": {"running": 1, "postponed": 0},
        }
        assert counter["feeds"]["role:approvers"] == {
            "seq": 2,
            "count": 0,
            "counts": {"running": 0, "postponed": 0},
        }


@pytest.mark.slow
async def test_claims_race_across_two_server_processes_and_exactly_one_wins(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> None:
    rounds = 8
    with two_servers(postgres_server, redis_server, "claims") as (a, b, dsn):
        async with producer_of(a.base_url) as c:
            put = await c.put("/api/v1/roles/approvers/members", json={"members": RACERS})
            assert put.status_code == 200
            for i in range(rounds):
                assert (await c.post("/api/v1/tasks", json=queue_body(f"q-{i}"))).status_code == 201
        winners = {}
        for i in range(rounds):
            answers = await claim_race([a.base_url, b.base_url], f"q-{i}", RACERS)
            winners[f"q-{i}"] = one_winner(answers)
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT id, owner FROM task WHERE tenant = 'default'")
            feeds = await conn.fetch("SELECT feed, seq, count FROM feed WHERE tenant = 'default'")
            events = await conn.fetchval(
                "SELECT count(*) FROM feed_event WHERE feed = 'role:approvers'"
            )
        finally:
            await conn.close()
    assert {r["id"]: r["owner"] for r in rows} == winners
    # the queue: one added and one removed per task; each winner's feed: one added each
    by_feed = {r["feed"]: (r["seq"], r["count"]) for r in feeds}
    assert by_feed.pop("role:approvers") == (2 * rounds, 0)
    assert events == 2 * rounds
    won: dict[str, int] = {}
    for w in winners.values():
        won[w] = won.get(w, 0) + 1
    assert by_feed == {f"user:{w}": (n, n) for w, n in won.items()}


async def test_claim_and_unclaim_write_the_events_each_feed_is_promised(live: Live) -> None:
    await setup_queue(live)
    async with person(live, "bob") as bob:
        assert (await bob.post("/api/v1/tasks/q-1/claim")).status_code == 200
        assert (await bob.post("/api/v1/tasks/q-1/unclaim")).status_code == 200
    async with producer(live) as c:
        await c.put("/api/v1/roles/reviewers/members", json={"members": ["dave"]})
        assert (await c.patch("/api/v1/tasks/q-1", json={"role": "reviewers"})).status_code == 200
    async with live.parts.reads.engines.reader.connect() as conn:
        rows = await conn.execute(
            select(event_t.c.feed, event_t.c.seq, event_t.c.message).order_by(
                event_t.c.feed, event_t.c.seq
            )
        )
        events = [(str(f), int(s), orjson.loads(m)) for f, s, m in rows]
    seen = [
        (f, s, m["type"], m["reason"], m["feed"], m["seq"], m["count"], m["task"]["owner"])
        for f, s, m in events
    ]
    assert seen == [
        ("role:approvers", 1, "task.added", "created", "role:approvers", 1, 1, None),
        ("role:approvers", 2, "task.removed", "claimed", "role:approvers", 2, 0, "bob"),
        ("role:approvers", 3, "task.added", "unclaimed", "role:approvers", 3, 1, None),
        ("role:approvers", 4, "task.removed", "reassigned", "role:approvers", 4, 0, None),
        ("role:reviewers", 1, "task.added", "reassigned", "role:reviewers", 1, 1, None),
        ("user:bob", 1, "task.added", "claimed", "user:bob", 1, 1, "bob"),
        ("user:bob", 2, "task.removed", "unclaimed", "user:bob", 2, 0, None),
    ]
    # each event carries the task as it is after the change
    assert [m["task"]["role"] for _, _, m in events[:4]] == ["approvers"] * 3 + ["reviewers"]
