"""Redis failures under load: producers keep getting 2xx (the database is the truth),
every instance notices and says so on /readyz, reconnects, resubscribes and catches
its connected owners up from the database; a deaf subscription is found by the
periodic ping check within 30 s.

The instances run with a sweep of 600 s, so that what reaches a client across
instances after a fault can only have come through the broker's resubscription and
its resync, not through the periodic sweep.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
import pytest

from tests.faults.audit import audit_url
from tests.faults.chaos import Cluster, ResumingClient, Workload, compare, settle
from tests.faults.proxy import FaultProxy
from tests.support.app import PRODUCER_KEY, SECRET, token
from tests.support.server_proc import ServerProcess
from tests.support.services import PostgresServer, RedisServer
from tests.support.tasks import task_body

pytestmark = pytest.mark.slow

OWNERS = [f"owner-{i}" for i in range(6)]


def env_for(db_url: str, redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        "TASKBELL_SWEEP_SECONDS": "600",
        "LOG_LEVEL": "warning",
    }


@dataclass
class Proxied:
    """Two instances, each reaching Redis through its own fault proxy."""

    servers: list[ServerProcess]
    proxies: list[FaultProxy]
    db_url: str


@pytest.fixture
def proxied(postgres_server: PostgresServer, redis_server: RedisServer) -> Iterator[Proxied]:
    db_url = postgres_server.create_database()
    with FaultProxy(redis_server.port) as pa, FaultProxy(redis_server.port) as pb:
        envs = [env_for(db_url, f"redis://127.0.0.1:{p.port}/0") for p in (pa, pb)]
        with ServerProcess(envs[0]) as a:
            a.wait_ready()
            with ServerProcess(envs[1]) as b:
                b.wait_ready()
                yield Proxied([a, b], [pa, pb], db_url)


def clients_for(ws_urls: Sequence[str]) -> list[ResumingClient]:
    """One tab of every owner on every instance."""
    return [
        ResumingClient(owner, token(owner), ws_urls, i)
        for owner in OWNERS
        for i in range(len(ws_urls))
    ]


def workload(base_urls: Sequence[str], total: int, seconds: float) -> Workload:
    return Workload(
        base_urls,
        OWNERS,
        producer_key=PRODUCER_KEY,
        token=token,
        total=total,
        duration_s=seconds,
        workers=3,
        seed=random.randrange(1 << 30),
    )


async def broker_states(servers: Sequence[ServerProcess]) -> list[str]:
    async with httpx.AsyncClient() as http:
        out = []
        for server in servers:
            resp = await http.get(server.base_url + "/readyz")
            out.append(str(resp.json()["checks"]["broker"]))
        return out


async def wait_states(servers: Sequence[ServerProcess], want: str, timeout: float) -> float:
    """Seconds until every instance's broker check says ``want``; fails after timeout."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while (states := await broker_states(servers)) != [want] * len(servers):
        assert loop.time() - began < timeout, f"broker states {states}, wanted {want}"
        await asyncio.sleep(0.1)
    return loop.time() - began


async def test_redis_cut_is_noticed_everywhere_and_every_owner_caught_up(
    proxied: Proxied,
) -> None:
    servers, proxies = proxied.servers, proxied.proxies
    clients = clients_for([s.ws_url for s in servers])
    for c in clients:
        c.start()
    await asyncio.gather(*(c.wait_connected(10) for c in clients))
    work = workload([s.base_url for s in servers], total=800, seconds=8)
    load = asyncio.create_task(work.run())

    await asyncio.sleep(1)
    for p in proxies:  # slow Redis first: everything still arrives, in order
        await asyncio.to_thread(p.delay, 0.3)
    await asyncio.sleep(1.5)
    for p in proxies:
        await asyncio.to_thread(p.restore)
    for p in proxies:
        await asyncio.to_thread(p.refuse)
    noticed = await wait_states(servers, "unreachable", 10)
    await asyncio.sleep(2)
    for p in proxies:
        await asyncio.to_thread(p.restore)
    back = await wait_states(servers, "ok", 30)
    await load
    truth = await settle(proxied.db_url, clients, work)
    for c in clients:
        await c.stop()
    problems, seen = compare(clients, truth)
    print(
        f"\n[redis cut] ops {dict(work.figures.ops_by_code)}, retries {dict(work.figures.retries)}"
        f"; noticed by both in {noticed:.1f} s, ready again in {back:.1f} s; "
        f"events delivered {seen.events}, closes {dict(seen.closes)}"
    )
    assert work.figures.unexpected == []
    assert not work.figures.retries, "a producer call had to be retried"
    assert truth.problems == []
    assert problems == []
    assert sum(p.stats.refused for p in proxies) > 0


async def test_deaf_subscription_is_found_within_30s_and_replaced(proxied: Proxied) -> None:
    a, b = proxied.servers
    watchers = [ResumingClient("alice", token("alice"), [s.ws_url], 0) for s in (a, b)]
    for w in watchers:
        w.start()
        await w.wait_connected(10)
    # B's connections to Redis stay open but go silent; new ones would work.
    await asyncio.to_thread(proxied.proxies[1].freeze)
    began = time.monotonic()
    async with httpx.AsyncClient(
        base_url=a.base_url, headers={"Authorization": f"Bearer {PRODUCER_KEY}"}
    ) as p:
        for i in range(5):
            assert (await p.post("/api/v1/tasks", json=task_body(f"t{i}"))).status_code == 201
    assert await watchers[0].wait_seq(5, 5)
    # Only a new subscription (and its resync) can bring B's watcher the changes.
    assert await watchers[1].wait_seq(5, 30), "B never noticed its subscription was deaf"
    found = time.monotonic() - began
    for w in watchers:
        await w.stop()
    truth = await audit_url(proxied.db_url)
    problems, _ = compare(watchers, truth)
    print(f"\n[deaf] B's watcher caught up {found:.1f} s after its subscription went deaf")
    assert problems == []
    assert "DeafSubscription" in b.log_text()
    assert await broker_states([a, b]) == ["ok", "ok"]


async def test_paused_then_flushed_redis_keeps_producers_answered(
    postgres_server: PostgresServer,
) -> None:
    db_url = postgres_server.create_database()
    with RedisServer() as redis:
        redis.start()
        cluster = Cluster(redis, db_url, 2, env_for(db_url, redis.url))
        try:
            await cluster.start()
            clients = clients_for(cluster.ws_urls)
            for c in clients:
                c.start()
            await asyncio.gather(*(c.wait_connected(10) for c in clients))
            work = workload(cluster.base_urls, total=600, seconds=8)
            load = asyncio.create_task(work.run())
            await asyncio.sleep(1)
            paused = await cluster.redis_outage("pause", 4)
            flushed = await cluster.redis_outage("flushall", 0.5)
            await load
            truth = await settle(db_url, clients, work)
            for c in clients:
                await c.stop()
        finally:
            cluster.close()
    problems, seen = compare(clients, truth)
    print(f"\n[redis pause] {paused}\n[redis flushall] {flushed}")
    print(f"ops {dict(work.figures.ops_by_code)}, events delivered {seen.events}")
    assert work.figures.unexpected == []
    assert not work.figures.retries
    # Writes during the pause wait for the publish to time out, then fail it: the
    # instance says its broker is unreachable until a publish or ping works again.
    assert paused["saw_down"] == [0, 1]
    assert truth.problems == [] and problems == []
    assert seen.events > 0
