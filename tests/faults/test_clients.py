"""Slow and flapping clients: a stalled reader is closed 4008 without slowing anyone
else and resumes with ``since``; connect/disconnect churn leaks no memory, tasks,
sockets, hub entries or Redis subscriptions."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
from typing import Any

import orjson
import psutil
from redis.asyncio import Redis

from server.connection import Connection
from tests.support.app import SECRET, Live, make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.server_proc import REPO_ROOT
from tests.support.stalled import StalledClient, flood_until_too_slow
from tests.support.tasks import task_body

OWNERS = [f"churner-{i}" for i in range(20)]


async def test_stalled_client_closed_4008_resumes_with_since_and_misses_nothing(
    sqlite_url: str,
) -> None:
    settings = make_settings(sqlite_url, send_queue_size=60, replay_limit=100_000)
    async with serve(settings) as live:
        slow = StalledClient(live.ws_url, token("alice"))
        await slow.connect_and_stall()  # its snapshot: seq 0
        fast = FeedClient(live.ws_url, token("alice"))
        await fast.connect()
        # Nobody else waits for the stalled reader: the fast one has it all.
        sent = len(await flood_until_too_slow(live, each_batch=fast.until_seq))
        code, _ = await slow.read_until_close()
        slow.close()
        resumed = FeedClient(live.ws_url, token("alice"))
        first = await resumed.connect(since=0)
        await resumed.close()
        await fast.close()
        running = await live.parts.reads.running_count("default", "user:alice")
    assert code == 4008
    assert first == {
        "type": "synced",
        "seq": sent,
        "count": sent,
        "counts": {"running": sent, "postponed": 0},
        "feeds": {
            "user:alice": {"seq": sent, "count": sent, "counts": {"running": sent, "postponed": 0}}
        },
    }
    assert [e["seq"] for e in resumed.events] == list(range(1, sent + 1))
    assert resumed.count == fast.count == running == sent


async def churn(live: Live, seconds: float, concurrency: int = 40) -> dict[str, Any]:
    """Run the churn driver (``tests.faults.churn``, another process) against ``live``
    for ``seconds`` while a producer keeps the owners' feeds moving, without growing
    them (the same tasks are renamed over and over)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    driver = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.churn",
        live.ws_url,
        str(seconds),
        str(concurrency),
        SECRET,
        *OWNERS,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    n = 0
    try:
        async with live.producer() as p:
            while loop.time() < deadline or driver.returncode is None:
                n += 1
                ops = [
                    {"op": "update", "id": f"{o}-{i}", "changes": {"title": f"Rename {n}"}}
                    for o in OWNERS
                    for i in range(3)
                ]
                answer = await p.post("/api/v1/tasks/batch", json={"ops": ops})
                assert answer.status_code == 200
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(driver.wait(), 0.05)
        out, _ = await asyncio.wait_for(driver.communicate(), seconds + 120)
    finally:
        if driver.returncode is None:  # the test failed first: leave no driver behind
            driver.kill()
            await driver.communicate()
    assert driver.returncode == 0
    result: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return result


async def seed_tasks(live: Live) -> None:
    ops = [
        {"op": "create", "task": task_body(f"{o}-{i}", o, process=None)}
        for o in OWNERS
        for i in range(3)
    ]
    async with live.producer() as p:
        assert (await p.post("/api/v1/tasks/batch", json={"ops": ops})).status_code == 200


async def quiet(live: Live, baseline: int, timeout: float = 15.0) -> tuple[int, int]:
    """Wait until the hub holds nobody and the task count is back to ``baseline``
    (bounded); returns (tasks, hub owners) as last seen."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        tasks = len(asyncio.all_tasks())
        owners = len(live.parts.hub.feeds) + len(live.parts.hub.users)
        if (owners == 0 and tasks <= baseline) or loop.time() > deadline:
            return tasks, owners
        await asyncio.sleep(0.1)


async def pubsub_counts(url: str | None) -> tuple[int, int]:
    """(patterns, channels) subscribed on the Redis at ``url``; (0, 0) without one."""
    if url is None:
        return 0, 0
    client = Redis.from_url(url)
    try:
        patterns = int(await client.pubsub_numpat())
        channels = len(await client.pubsub_channels())
    finally:
        await client.aclose()
    return patterns, channels


async def test_connect_disconnect_churn_leaks_nothing(live: Live) -> None:
    proc = psutil.Process()
    await seed_tasks(live)
    # Warm up first: pools, caches and allocator arenas grow once, not per socket.
    await churn(live, seconds=2.0)
    await quiet(live, baseline=10**6)
    await asyncio.sleep(0.5)
    gc.collect()
    base_tasks = len(asyncio.all_tasks())
    base_rss = proc.memory_info().rss
    base_fds = proc.num_fds()
    base_objects = len(gc.get_objects())
    base_pubsub = await pubsub_counts(live.settings.redis_url)

    began = asyncio.get_running_loop().time()
    result = await churn(live, seconds=4.0)
    elapsed = asyncio.get_running_loop().time() - began
    tasks, owners = await quiet(live, base_tasks)
    gc.collect()
    await asyncio.sleep(0.2)
    rss_growth = proc.memory_info().rss - base_rss
    fds = proc.num_fds()
    objects = gc.get_objects()
    alive = sum(isinstance(o, Connection) for o in objects)
    grown = len(objects) - base_objects
    del objects
    pubsub = await pubsub_counts(live.settings.redis_url)

    sessions = result["sessions"]
    print(
        f"\n[churn {live.parts.broker.name}] {sessions} sessions in {elapsed:.1f} s "
        f"({sessions / elapsed:.0f}/s), modes {result['modes']}, errors "
        f"{result['errors']}; tasks {base_tasks} -> {tasks}, fds {base_fds} -> {fds}, "
        f"objects {grown:+d}, RSS {rss_growth / 1e6:+.1f} MB, pub/sub {base_pubsub} -> {pubsub}"
    )
    assert sessions >= 500  # the driver goes on until 600 (or 90 s)
    assert owners == 0 and live.parts.hub.feeds == {} and live.parts.hub.users == {}
    assert live.parts.hub.connection_count == 0
    assert alive == 0, "Connection objects outlived their sockets"
    assert tasks <= base_tasks
    assert fds <= base_fds + 2
    assert pubsub == base_pubsub
    # Python objects: what one leaked session would leave (a Connection, its queue,
    # event and tasks) times 500+ sessions is far above the noise of a few hundred.
    assert grown < 1000
    # RSS still grows a little while the allocator warms up (it levels off after a few
    # thousand sessions, with a flat object count): a leaked socket buffer or snapshot
    # per session would be tens of MB.
    assert rss_growth < 32_000_000
