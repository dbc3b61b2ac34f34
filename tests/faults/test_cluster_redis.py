"""A Redis Cluster master killed and restarted under load: producers keep getting 2xx,
every instance notices, resubscribes on every master and catches its owners up from
the database; at the end every client equals the database and no node has a pattern
subscription.

Like tests/faults/test_redis.py, the instances sweep only every 600 s, so what reaches
a client across instances after the fault came through the resubscription's resync.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.faults.chaos import Cluster, compare, settle
from tests.faults.test_redis import OWNERS, clients_for, env_for, workload
from tests.support.services import PostgresServer, RedisCluster

pytestmark = pytest.mark.slow


async def test_a_master_killed_and_restarted_under_load_loses_nothing(
    postgres_server: PostgresServer,
) -> None:
    db_url = postgres_server.create_database()
    with RedisCluster() as redis:
        cluster = Cluster(redis.nodes[0], db_url, 2, env_for(db_url, redis.url))
        try:
            await cluster.start()
            clients = clients_for(cluster.ws_urls)
            for c in clients:
                c.start()
            await asyncio.gather(*(c.wait_connected(10) for c in clients))
            work = workload(cluster.base_urls, total=800, seconds=10)
            load = asyncio.create_task(work.run())
            await asyncio.sleep(1.5)
            victim = redis.nodes[1]
            await asyncio.to_thread(victim.kill)
            loop = asyncio.get_running_loop()
            began = loop.time()
            saw_down: set[int] = set()
            async with httpx.AsyncClient() as http:
                while loop.time() - began < 3:
                    for i, state in enumerate(await cluster.broker_states(http)):
                        if state == "unreachable":
                            saw_down.add(i)
                    await asyncio.sleep(0.2)
                await asyncio.to_thread(victim.start)
                await asyncio.to_thread(redis.wait_ok)
                back = loop.time()
                while await cluster.broker_states(http) != ["ok", "ok"]:
                    assert loop.time() - back < 30, "the instances did not resubscribe"
                    await asyncio.sleep(0.1)
                ready_after = loop.time() - back
            await load
            truth = await settle(db_url, clients, work)
            for c in clients:
                await c.stop()
        finally:
            cluster.close()
        numpat = redis.numpat()
    problems, seen = compare(clients, truth)
    print(
        f"\n[cluster master kill] ops {dict(work.figures.ops_by_code)}; down seen by "
        f"{sorted(saw_down)}; ready again {ready_after:.1f} s after the master was back; "
        f"events delivered {seen.events}, closes {dict(seen.closes)}"
    )
    assert len(OWNERS) == 6
    assert work.figures.unexpected == []
    assert not work.figures.retries, "a producer call had to be retried"
    assert sorted(saw_down) == [0, 1]
    assert truth.problems == []
    assert problems == []
    assert seen.events > 0
    assert numpat == [0, 0, 0]
