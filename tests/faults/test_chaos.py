"""Chaos: three real server processes, real Redis and PostgreSQL, 200 client
connections over 40 people in each of two tenants (the same user, role and task ids in
both) and 5,000 random operations: tasks for people and for role queues, claims by
members (two members racing for one task through two instances), unclaims, members
acting on queue tasks, role memberships changing while the sockets are open, one
substitution starting and ending on the server's clock and one deleted. Meanwhile Redis
is killed three times (and once paused, once emptied), one instance is restarted with
SIGTERM and one with SIGKILL. At the end every client must agree with the database,
feed by feed and event by event, and follow exactly the feeds the database says its
person follows; no acknowledged write may be lost and each claim race has one winner.

Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

import pytest

from server.auth import mint_token
from tests.faults.audit import Audit
from tests.faults.chaos import (
    Cluster,
    ResumingClient,
    Workload,
    WorkloadFigures,
    check_writes,
    compare,
    producer_keys_setting,
    settle,
    two_tenants,
)
from tests.support.app import PRODUCER_KEY, SECRET
from tests.support.services import PostgresServer, RedisServer

pytestmark = pytest.mark.slow

OWNERS = [f"owner-{i:02d}" for i in range(40)]
OTHER_KEY = "pk-test-acme-producer"
OPERATIONS = 5000
LOAD_SECONDS = 30.0
PLANS = two_tenants(OWNERS, PRODUCER_KEY, OTHER_KEY)


def tokens(tenant: str) -> Any:
    return lambda user: mint_token(SECRET, user, 3600, tenant=tenant)


@pytest.mark.timeout(240)
async def test_chaos_loses_nothing_and_every_client_agrees_with_the_database(
    postgres_server: PostgresServer,
) -> None:
    db_url = postgres_server.create_database()
    env = {
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": producer_keys_setting(PLANS),
        "TASKBELL_SWEEP_SECONDS": "1",
        "LOG_LEVEL": "warning",
    }
    began = time.monotonic()
    seed = random.randrange(1 << 30)
    with RedisServer() as redis:
        redis.start()
        cluster = Cluster(redis, db_url, 3, env)
        try:
            await cluster.start()
            clients = [
                ResumingClient(owner, tokens(p.tenant)(owner), cluster.ws_urls, i, p.tenant)
                for i, (p, owner) in enumerate(
                    (p, o) for p in PLANS for o in OWNERS for _ in range(p.clients_per_owner)
                )
            ]
            for c in clients:
                c.start()
            await asyncio.gather(*(c.wait_connected(30) for c in clients))
            works = [
                Workload(
                    cluster.base_urls,
                    OWNERS,
                    producer_key=p.producer_key,
                    token=tokens(p.tenant),
                    total=round(OPERATIONS * p.share),
                    duration_s=LOAD_SECONDS,
                    seed=seed + n,
                    tenant=p.tenant,
                    roles=p.roles,
                    absences=p.absences,
                )
                for n, p in enumerate(PLANS)
            ]
            load = asyncio.gather(*(w.run() for w in works))
            faults = await run_faults(cluster)
            await load
            loaded = time.monotonic()
            truth = await settle(cluster.db_url, clients, works)
            settled = time.monotonic()
            for c in clients:
                await c.stop()
        finally:
            cluster.close()
    problems, seen = compare(clients, truth)
    lost = check_writes(works, truth)

    figures = WorkloadFigures()
    for w in works:
        figures.add(w.figures)
    races = [r for w in works for r in w.races]
    lost_races = sum(1 for r in races for _, code, _ in r.answers if code == 409)
    print("\n=== chaos figures ===")
    total = time.monotonic() - began
    print(
        f"seed {seed}; load done {loaded - began:.1f} s after start, settled "
        f"{settled - loaded:.1f} s later, total {total:.1f} s"
    )
    print(f"operations: {figures.ops} in {figures.requests} requests")
    for w in works:
        print(f"  {w.tenant}: {w.figures.ops} ops, {dict(sorted(w.figures.ops_by_code.items()))}")
    print(f"  by result code: {dict(sorted(figures.ops_by_code.items()))}")
    print("  by kind and answer:")
    by_kind: dict[str, dict[str, int]] = {}
    for what, n in figures.answers.items():
        kind, code = what.rsplit(" ", 1)
        by_kind.setdefault(kind, {})[code] = n
    for kind, codes in sorted(by_kind.items()):
        print(f"    {kind}: {dict(sorted(codes.items()))}")
    print(f"  retried on another instance: {dict(figures.retries)}")
    print(
        f"claims: races {len(races)} (won {sum(1 for r in races for a in r.answers if a[1] == 200)}"
        f", lost {lost_races}); single claims {by_kind.get('claim', {})}, by producer "
        f"{by_kind.get('producer claim', {})}; claims standing at the end "
        f"{sum(len(w.claimed) for w in works)}"
    )
    print(f"faults: {json.dumps(faults)}")
    kinds = Counter(
        ("role" if "/role:" in name else "user", name.split("/")[0] if "/" in name else "default")
        for name in truth.owners
    )
    print(
        f"database: tasks {truth.tasks_by_status}, feed events {truth.events}, feeds "
        f"{dict(sorted((f'{t} {k}', n) for (k, t), n in kinds.items()))}"
    )
    print(
        f"clients: {seen.clients}, events delivered {seen.events} (role queues "
        f"{seen.role_events}, stood in for {seen.standin_events}), connections "
        f"{seen.connections}, snapshots after the first {seen.snapshots_after_first} "
        f"(needless {seen.needless_snapshots}), feed.joined {seen.joined}, feed.left "
        f"{seen.left}, seq gaps {seen.gaps}"
    )
    print(f"  feeds followed at the end -> clients: {dict(sorted(seen.feeds_at_end.items()))}")
    print(f"  reconnects by close code: {dict(sorted(seen.closes.items()))}")
    other = {k.split("/", 1)[1] for k in truth.statuses if "/" in k}
    shared = len(other & {k for k in truth.statuses if "/" not in k})
    print(f"  task ids in both tenants: {shared}")
    running = sum(t.count for t in truth.owners.values())
    print(
        f"per feed: {len(truth.owners)} feeds checked, seqs {min_max(truth, 'seq')}, "
        f"counts {min_max(truth, 'count')} (total running {running}); acked tasks "
        f"checked {sum(len(w.acked) for w in works)}"
    )
    print(f"problems: database {len(truth.problems)}, clients {len(problems)}, lost {len(lost)}")

    assert figures.ops >= OPERATIONS
    assert figures.unexpected == [], figures.unexpected[:10]
    assert truth.problems == [], truth.problems[:10]
    assert problems == [], problems[:10]
    assert lost == [], lost[:10]
    assert seen.gaps == 0, "a feed skipped a seq"
    for p in PLANS:
        for o in OWNERS:
            assert (o if p.tenant == "default" else f"{p.tenant}/user:{o}") in truth.owners
    assert races, "no claim race happened"
    assert shared > 0, "no task id was used in both tenants"
    # Every instance saw each Redis kill on /readyz, and came back.
    for fault in faults:
        if fault.get("how") == "kill":
            assert fault["saw_down"] == [0, 1, 2], fault
            assert fault["ready_after_s"] < 30, fault
    assert seen.closes["1012"] > 0, "SIGTERM closed no socket with 1012"
    # since and since_feeds within the kept log always give a replay: a snapshot again
    # only when the person started following a feed while away
    assert seen.needless_snapshots == 0


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
