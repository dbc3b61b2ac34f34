"""Chaos: three real server processes, real Redis and PostgreSQL, 200 client
connections over 50 owners and 5,000 random operations, while Redis is killed three
times (and once paused, once emptied), one instance is restarted with SIGTERM and one
with SIGKILL. At the end every client must agree with the database, event by event.

Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import pytest

from tests.faults.audit import Audit
from tests.faults.chaos import Cluster, ResumingClient, Workload, check_acked, compare, settle
from tests.support.app import PRODUCER_KEY, SECRET, token
from tests.support.services import PostgresServer, RedisServer

pytestmark = pytest.mark.slow

OWNERS = [f"owner-{i:02d}" for i in range(50)]
CLIENTS_PER_OWNER = 4
OPERATIONS = 5000
LOAD_SECONDS = 30.0


@pytest.mark.timeout(240)
async def test_chaos_loses_nothing_and_every_client_agrees_with_the_database(
    postgres_server: PostgresServer,
) -> None:
    db_url = postgres_server.create_database()
    env = {
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        "TASKBELL_SWEEP_SECONDS": "1",
        "LOG_LEVEL": "warning",
    }
    began = time.monotonic()
    with RedisServer() as redis:
        redis.start()
        cluster = Cluster(redis, db_url, 3, env)
        try:
            await cluster.start()
            clients = [
                ResumingClient(owner, token(owner, 3600), cluster.ws_urls, i)
                for i, owner in enumerate(o for o in OWNERS for _ in range(CLIENTS_PER_OWNER))
            ]
            for c in clients:
                c.start()
            await asyncio.gather(*(c.wait_connected(30) for c in clients))
            work = Workload(
                cluster.base_urls,
                OWNERS,
                producer_key=PRODUCER_KEY,
                token=lambda owner: token(owner, 3600),
                total=OPERATIONS,
                duration_s=LOAD_SECONDS,
                seed=random.randrange(1 << 30),
            )
            load = asyncio.create_task(work.run())
            faults = await run_faults(cluster)
            await load
            loaded = time.monotonic()
            truth = await settle(cluster.db_url, clients, work)
            for c in clients:
                await c.stop()
        finally:
            cluster.close()
    problems, seen = compare(clients, truth)
    lost = check_acked(work.acked, truth.statuses)

    figures = work.figures
    print("\n=== chaos figures ===")
    total = time.monotonic() - began
    print(f"seed {work.seed}; load done {loaded - began:.1f} s after start, total {total:.1f} s")
    print(f"operations: {figures.ops} in {figures.requests} requests")
    print(f"  by result code: {dict(sorted(figures.ops_by_code.items()))}")
    print(f"  by kind: {dict(sorted(figures.ops_by_kind.items()))}")
    print(f"  requests by kind: {dict(sorted(figures.requests_by_kind.items()))}")
    print(f"  retried on another instance: {dict(figures.retries)}")
    print(f"faults: {json.dumps(faults)}")
    print(f"database: tasks {truth.tasks_by_status}, feed events {truth.events}")
    print(
        f"clients: {seen.clients}, events delivered {seen.events}, connections "
        f"{seen.connections}, snapshots after the first {seen.snapshots_after_first}"
    )
    print(f"  reconnects by close code: {dict(sorted(seen.closes.items()))}")
    running = sum(t.count for t in truth.owners.values())
    print(
        f"per owner: {len(truth.owners)} owners checked, seqs {min_max(truth, 'seq')}, "
        f"counts {min_max(truth, 'count')} (total running {running}); "
        f"acked tasks checked {len(work.acked)}"
    )
    print(f"problems: database {len(truth.problems)}, clients {len(problems)}, lost {len(lost)}")

    assert figures.ops >= OPERATIONS
    assert figures.unexpected == [], figures.unexpected[:10]
    assert truth.problems == [], truth.problems[:10]
    assert problems == [], problems[:10]
    assert lost == [], lost[:10]
    assert len(truth.owners) == len(OWNERS)
    # Every instance saw each Redis kill on /readyz, and came back.
    for fault in faults:
        if fault.get("how") == "kill":
            assert fault["saw_down"] == [0, 1, 2], fault
            assert fault["ready_after_s"] < 30, fault
    assert seen.closes["1012"] > 0, "SIGTERM closed no socket with 1012"
    # since within the kept log always gives a replay: no client needed a snapshot again
    assert seen.snapshots_after_first == 0


def min_max(truth: Audit, what: str) -> str:
    values = [getattr(t, what) for t in truth.owners.values()]
    return f"{min(values)}..{max(values)}"


async def run_faults(cluster: Cluster) -> list[dict[str, Any]]:
    """The fault timeline, one after the other while the load runs (~30 s)."""
    log: list[dict[str, Any]] = []

    async def at(t: float) -> None:
        await asyncio.sleep(max(0.0, t - (loop.time() - start)))

    loop = asyncio.get_running_loop()
    start = loop.time()
    await at(2)
    log.append(await cluster.redis_outage("kill", 1.5))
    await at(7)
    status = await cluster.restart(1, "term")
    log.append({"instance": 1, "how": "SIGTERM", "exit": status, "at_s": loop.time() - start})
    await at(11)
    log.append(await cluster.redis_outage("kill", 1.5))
    await at(15)
    status = await cluster.restart(2, "kill")
    log.append({"instance": 2, "how": "SIGKILL", "exit": status, "at_s": loop.time() - start})
    await at(19)
    log.append(await cluster.redis_outage("kill", 1.5))
    await at(23)
    log.append(await cluster.redis_outage("flushall", 0.5))
    await at(25)
    log.append(await cluster.redis_outage("pause", 2.0))
    return log
