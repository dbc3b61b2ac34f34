"""Several real server processes sharing one Redis and one PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from tests.support.app import PRODUCER_KEY, SECRET, token
from tests.support.client import FeedClient
from tests.support.server_proc import ServerProcess
from tests.support.services import PostgresServer, RedisServer
from tests.support.tasks import task_body

pytestmark = pytest.mark.slow


def server_env(db_url: str, redis_url: str, sweep: float = 1.0) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        "TASKBELL_SWEEP_SECONDS": str(sweep),
        "LOG_LEVEL": "warning",
    }


@pytest.fixture
def cluster(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    name = f"scale_{random.randrange(16**8):08x}"
    db_url = postgres_server.create_database(name)
    env = server_env(db_url, redis_server.url)
    with ServerProcess(env) as a, ServerProcess(env) as b:
        a.wait_ready()
        b.wait_ready()
        yield a, b, postgres_server.dsn_for(name)


async def running_in_db(dsn: str, owner: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM task WHERE owner = $1 AND status = 'running'", owner
        )
    finally:
        await conn.close()
    return int(value)


async def until_not_ready(base_url: str, tries: int = 100) -> httpx.Response:
    """Poll ``/readyz`` every 0.1 s until it answers 503 (or ``tries`` run out); the
    last answer."""
    async with httpx.AsyncClient(base_url=base_url) as probe:
        for _ in range(tries):
            ready = await probe.get("/readyz")
            if ready.status_code == 503:
                break
            await asyncio.sleep(0.1)
    return ready


def producer_for(server: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": f"Bearer {PRODUCER_KEY}"}
    )


async def produce_mixed(server: ServerProcess, worker: int, owners: list[str]) -> None:
    """25 creates through ``server`` for random ``owners``; about 30 % completed at once
    and 20 % reassigned (seeded by ``worker``, so a run repeats)."""
    rng = random.Random(worker)
    async with producer_for(server) as p:
        for i in range(25):
            owner = rng.choice(owners)
            tid = f"w{worker}-{i}"
            resp = await p.post("/api/v1/tasks", json=task_body(tid, owner))
            assert resp.status_code == 201
            roll = rng.random()
            if roll < 0.3:
                assert (await p.post(f"/api/v1/tasks/{tid}/complete")).status_code == 200
            elif roll < 0.5:
                other = rng.choice(owners)
                resp = await p.patch(f"/api/v1/tasks/{tid}", json={"owner": other})
                assert resp.status_code == 200


async def test_two_processes_show_every_client_the_same_events_and_counts(
    cluster: tuple[ServerProcess, ServerProcess, str],
) -> None:
    a, b, dsn = cluster
    owners = ["alice", "bob", "carol"]
    clients = {o: [FeedClient(s.ws_url, token(o)) for s in (a, b, a, b)] for o in owners}
    for group in clients.values():
        for c in group:
            await c.connect()

    await asyncio.gather(*(produce_mixed(s, w, owners) for w, s in enumerate([a, b, a, b])))

    for owner in owners:
        async with httpx.AsyncClient(
            base_url=b.base_url, headers={"Authorization": f"Bearer {token(owner)}"}
        ) as person:
            final = (await person.get("/api/v1/me/counter")).json()
        truth = await running_in_db(dsn, owner)
        assert final["count"] == truth
        group = clients[owner]
        for client in group:
            await client.until_seq(final["seq"], timeout=15)
            await client.close()
            assert client.count == truth
            assert sorted(client.tasks) == sorted(group[0].tasks)
        # the same count for the same seq on every client, whichever process it is on
        reference = group[0].counts_by_seq
        assert all(c.counts_by_seq == reference for c in group)


async def test_listener_catches_up_after_redis_comes_back(
    postgres_server: PostgresServer,
) -> None:
    name = f"redis_{random.randrange(16**8):08x}"
    db_url = postgres_server.create_database(name)
    with RedisServer() as redis:
        redis.start()
        # A long sweep interval: only the reconnect's catch-up can deliver in time.
        env = server_env(db_url, redis.url, sweep=600)
        with ServerProcess(env) as a, ServerProcess(env) as b:
            a.wait_ready()
            b.wait_ready()
            watcher = FeedClient(b.ws_url, token("alice"))
            await watcher.connect()
            async with producer_for(a) as p:
                assert (await p.post("/api/v1/tasks", json=task_body("t0"))).status_code == 201
                await watcher.until_seq(1)

                redis.kill()
                # The database is the truth: producers keep getting 2xx without Redis.
                for i in range(1, 6):
                    resp = await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
                    assert resp.status_code == 201
                ready = await until_not_ready(b.base_url)
                assert ready.status_code == 503
                assert ready.json()["checks"]["broker"] == "unreachable"
                # Read what reached the watcher during the outage.
                during_outage = await watcher.before_pong()
                assert during_outage == [], "only the catch-up may deliver t1..t5"
                assert watcher.seq == 1

                await asyncio.to_thread(redis.start)
                await watcher.until_seq(6, timeout=20)
                await asyncio.to_thread(b.wait_ready)
            await watcher.close()
    assert watcher.count == 6
    assert [e["seq"] for e in watcher.events] == [1, 2, 3, 4, 5, 6]
