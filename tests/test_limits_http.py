"""Rate limits per producer key and per user, through a real server: 429
``rate_limited`` with ``Retry-After`` over the rate, callers kept apart, the
unauthenticated and the health checks left alone."""

from __future__ import annotations

import httpx

from tests.support.app import PRODUCER_KEY, make_settings, serve, token
from tests.support.audiences import ACME, TENANT_KEYS, producer
from tests.support.tasks import assert_error, task_body

OTHER_KEY = "pk-test-other-producer"


def assert_rate_limited(resp: httpx.Response) -> None:
    assert_error(resp, 429, "rate_limited")
    retry = resp.headers["retry-after"]
    assert retry.isdigit() and int(retry) >= 1, retry


async def test_a_producer_key_over_its_rate_gets_429_and_another_key_does_not(
    sqlite_url: str,
) -> None:
    # One request a second, a burst of two: the third call within a second is refused.
    settings = make_settings(
        sqlite_url, rate_producer=1.0, producer_keys=frozenset({PRODUCER_KEY, OTHER_KEY})
    )
    async with serve(settings) as live, live.producer() as p:
        assert_error(await p.get("/api/v1/tasks/t-none"), 404)
        assert_error(await p.get("/api/v1/tasks/t-none"), 404)
        over = await p.post("/api/v1/tasks", json=task_body("t-over"))
        assert_rate_limited(over)
        async with httpx.AsyncClient(
            base_url=live.base_url, headers={"Authorization": f"Bearer {OTHER_KEY}"}
        ) as other:
            # Nothing of the refused call was stored; the other key has its own bucket.
            assert_error(await other.get("/api/v1/tasks/t-over"), 404)
            assert (await other.post("/api/v1/tasks", json=task_body("t-1"))).status_code == 201
        buckets = live.app.state.edge.producers
        assert len(buckets) == 2
        assert not any(PRODUCER_KEY in key or OTHER_KEY in key for key in buckets.ids())


async def test_a_user_over_their_rate_gets_429_and_others_do_not(sqlite_url: str) -> None:
    # A request every two seconds, a burst of one (a burst is at least one request).
    async with serve(make_settings(sqlite_url, rate_user=0.5)) as live:
        async with live.person("alice") as alice, live.person("bob") as bob:
            first = await alice.get("/api/v1/me/counter")
            second = await alice.get("/api/v1/me/tasks")
            others = await bob.get("/api/v1/me/counter")
        # A fresh token of the same user shares the user's bucket.
        async with httpx.AsyncClient(
            base_url=live.base_url,
            headers={"Authorization": f"Bearer {token('alice', ttl=7200)}"},
        ) as again:
            third = await again.get("/api/v1/me/counter")
    assert first.status_code == 200
    assert_rate_limited(second)
    assert others.status_code == 200
    assert_rate_limited(third)


async def test_a_query_token_counts_against_the_same_user(sqlite_url: str) -> None:
    async with serve(make_settings(sqlite_url, rate_user=0.5)) as live:  # burst 1
        async with live.person("alice") as alice:
            assert (await alice.get("/api/v1/me/counter")).status_code == 200
        async with httpx.AsyncClient(base_url=live.base_url) as anon:
            resp = await anon.get("/api/v1/events", params={"token": token("alice")})
    assert_rate_limited(resp)


async def test_unauthenticated_calls_and_health_checks_are_not_rate_limited(
    sqlite_url: str,
) -> None:
    async with serve(make_settings(sqlite_url, rate_user=0.5, rate_producer=0.5)) as live:
        async with httpx.AsyncClient(base_url=live.base_url) as anon:
            missing = [await anon.get("/api/v1/me/counter") for _ in range(5)]
            forged = [
                await anon.get(
                    "/api/v1/me/counter", headers={"Authorization": "Bearer not-a-token"}
                )
                for _ in range(5)
            ]
            health = [await anon.get("/healthz") for _ in range(5)]
            ready = [await anon.get("/readyz") for _ in range(5)]
            page = [await anon.get("/") for _ in range(5)]
        async with live.producer() as p:
            assert (await p.get("/api/v1/process-definitions")).status_code == 200
            probes = [await p.get("/healthz") for _ in range(5)]
    for resp in missing:
        assert_error(resp, 401, "missing_credentials")
    for resp in forged:
        assert_error(resp, 401, "invalid_token")
    assert {r.status_code for r in health + ready + page + probes} == {200}


async def test_by_default_producers_are_not_limited_and_people_have_room(
    sqlite_url: str,
) -> None:
    async with serve(make_settings(sqlite_url)) as live:
        async with live.producer() as p:
            ops = [{"op": "create", "task": task_body(f"t{i}")} for i in range(5)]
            assert (await p.post("/api/v1/tasks/batch", json={"ops": ops})).status_code == 200
            codes = {(await p.get(f"/api/v1/tasks/t{i % 5}")).status_code for i in range(120)}
        async with live.person("alice") as alice:
            # A panel's busiest moment (a reconnect and a few clicks) is far below 40.
            people = {(await alice.get("/api/v1/me/counts")).status_code for _ in range(30)}
    assert codes == {200}
    assert people == {200}


async def test_a_rate_of_zero_turns_the_user_limit_off(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, rate_user=0.0)
    async with serve(settings) as live, live.person("alice") as alice:
        codes = {(await alice.get("/api/v1/me/counter")).status_code for _ in range(100)}
    assert codes == {200}
    assert live.app.state.edge.users is None


async def test_with_limits_on_each_producer_key_still_acts_in_its_own_tenant(
    sqlite_url: str,
) -> None:
    """The gate looks a producer key up for its bucket and hands the endpoint its
    tenant: with both limits on, a key of ``acme`` creates, completes and reads in
    ``acme`` only, and the default key's calls never see it."""
    settings = make_settings(
        sqlite_url, producer_keys=TENANT_KEYS, rate_producer=1000.0, rate_user=1000.0
    )
    async with serve(settings) as live, producer(live, ACME) as acme, producer(live) as default:
        created = await acme.post("/api/v1/tasks", json=task_body())
        assert created.status_code == 201, created.text
        assert_error(await default.get("/api/v1/tasks/t-1"), 404, "task_not_found")
        assert_error(await default.post("/api/v1/tasks/t-1/complete"), 404)
        done = await acme.post("/api/v1/tasks/t-1/complete")
        assert done.status_code == 200, done.text
        assert (await acme.get("/api/v1/tasks/t-1")).json()["status"] == "completed"
