"""Two real server processes on one PostgreSQL and a real three-master Redis Cluster:
sharded pub/sub carries events between them, and a listener whose master went away
catches up from the database when it is back."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import httpx
import pytest
from redis.asyncio import Redis

from server.broker.partitions import SLOT_OF, channel_of, partition_of
from server.feeds import user_key
from tests.support.app import token
from tests.support.client import FeedClient
from tests.support.server_proc import ServerProcess
from tests.support.services import PostgresServer, RedisCluster
from tests.support.tasks import task_body
from tests.test_scaleout import (
    produce_mixed,
    producer_for,
    running_in_db,
    server_env,
    until_not_ready,
)

pytestmark = pytest.mark.slow

OWNERS = ["alice", "bob", "carol", "dave", "erin", "frank"]


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as cluster:
        yield cluster


async def shard_channels(cluster: RedisCluster) -> set[str]:
    found: set[str] = set()
    for port in cluster.ports:
        client = Redis(port=port)
        try:
            names = await client.execute_command(  # type: ignore[no-untyped-call]
                "PUBSUB", "SHARDCHANNELS", "taskbell:feed:*"
            )
        finally:
            await client.aclose()
        found |= {n.decode() for n in names}
    return found


def master_of(cluster: RedisCluster, owner: str) -> int:
    """Index of the node serving ``owner``'s partition (equal slot ranges, in order)."""
    slot = SLOT_OF[partition_of(user_key("default", owner))]
    return min(slot * len(cluster.nodes) // 16384, len(cluster.nodes) - 1)


async def test_two_processes_on_a_cluster_show_every_client_the_same_events(
    postgres_server: PostgresServer, redis_cluster: RedisCluster
) -> None:
    name = f"cscale_{random.randrange(16**8):08x}"
    db_url = postgres_server.create_database(name)
    dsn = postgres_server.dsn_for(name)
    # One instance finds the cluster from a plain node URL, the other is told.
    envs = [server_env(db_url, redis_cluster.url), server_env(db_url, redis_cluster.cluster_url)]
    # The owners live on every master.
    assert {master_of(redis_cluster, o) for o in OWNERS} == {0, 1, 2}
    with ServerProcess(envs[0]) as a, ServerProcess(envs[1]) as b:
        a.wait_ready()
        b.wait_ready()
        clients = {o: [FeedClient(s.ws_url, token(o)) for s in (a, b, a, b)] for o in OWNERS}
        for group in clients.values():
            for c in group:
                await c.connect()

        workers = enumerate([a, b, a, b])
        await asyncio.gather(*(produce_mixed(s, w, list(OWNERS)) for w, s in workers))

        # Sharded channels on the masters, only ones of held owners' partitions.
        held = {channel_of(user_key("default", o)) for o in OWNERS}
        assert await shard_channels(redis_cluster) == held
        for owner in OWNERS:
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
            reference = group[0].counts_by_seq
            assert all(c.counts_by_seq == reference for c in group)
    assert redis_cluster.numpat() == [0, 0, 0]


async def test_listener_catches_up_after_its_master_comes_back(
    postgres_server: PostgresServer,
) -> None:
    db_url = postgres_server.create_database()
    with RedisCluster() as cluster:
        # A long sweep: only the resubscription's catch-up can deliver in time.
        env = server_env(db_url, cluster.url, sweep=600)
        with ServerProcess(env) as a, ServerProcess(env) as b:
            a.wait_ready()
            b.wait_ready()
            watcher = FeedClient(b.ws_url, token("alice"))
            await watcher.connect()
            node = cluster.nodes[master_of(cluster, "alice")]
            async with producer_for(a) as p:
                assert (await p.post("/api/v1/tasks", json=task_body("t0"))).status_code == 201
                await watcher.until_seq(1)

                await asyncio.to_thread(node.kill)
                # The database is the truth: producers keep getting 2xx.
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

                await asyncio.to_thread(node.start)
                await watcher.until_seq(6, timeout=30)
                await asyncio.to_thread(b.wait_ready, 30)
                # ... and live delivery works again through the restarted master.
                assert (await p.post("/api/v1/tasks", json=task_body("t6"))).status_code == 201
                await watcher.until_seq(7, timeout=15)
            await watcher.close()
        assert cluster.numpat() == [0, 0, 0]
    assert watcher.count == 7
    assert [e["seq"] for e in watcher.events] == [1, 2, 3, 4, 5, 6, 7]
