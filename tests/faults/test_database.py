"""Database trouble: producer calls fail cleanly (503, JSON error, Retry-After), nothing
is half applied, and everything resumes when the database is back.

PostgreSQL is reached through the fault proxy by a real server process; SQLite is
locked by another connection holding an exclusive transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.faults.audit import audit_url
from tests.faults.proxy import FaultProxy
from tests.support.app import PRODUCER_KEY, SECRET, make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.server_proc import ServerProcess
from tests.support.services import PostgresServer
from tests.support.tasks import assert_error, task_body

pytestmark = pytest.mark.slow


@dataclass
class Behind:
    """A server process whose PostgreSQL connections all go through ``proxy``."""

    server: ServerProcess
    proxy: FaultProxy
    url: str  # the database, directly (for the audit)


@pytest.fixture
def behind_proxy(postgres_server: PostgresServer) -> Iterator[Behind]:
    url = postgres_server.create_database()
    with FaultProxy(postgres_server.port) as proxy:
        via = url.replace(f":{postgres_server.port}/", f":{proxy.port}/")
        env = {
            "DATABASE_URL": via,
            "TASKBELL_SECRET": SECRET,
            "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
            "TASKBELL_SWEEP_SECONDS": "0.5",
            "LOG_LEVEL": "warning",
        }
        with ServerProcess(env) as server:
            server.wait_ready()
            yield Behind(server, proxy, url)


@contextlib.asynccontextmanager
async def producer(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {PRODUCER_KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
        yield client


def batch_of(prefix: str, n: int, owner: str = "alice") -> dict[str, Any]:
    return {"ops": [{"op": "create", "task": task_body(f"{prefix}-{i}", owner)} for i in range(n)]}


def assert_503(resp: httpx.Response, code: str = "database_unavailable") -> None:
    assert_error(resp, 503, code)
    assert int(resp.headers["retry-after"]) >= 1


async def until_2xx(
    call: Callable[[], Awaitable[httpx.Response]], attempts: int = 100
) -> httpx.Response:
    """Repeat ``call()`` until it answers 2xx (the database is back); bounded."""
    resp: httpx.Response | None = None
    for _ in range(attempts):
        resp = await call()
        if resp.status_code < 300:
            return resp
        assert resp.status_code == 503, resp.text
        await asyncio.sleep(0.2)
    raise AssertionError(f"still failing after {attempts} attempts: {resp and resp.text}")


async def test_postgres_cut_and_refused_answers_503_and_resumes(behind_proxy: Behind) -> None:
    server, proxy = behind_proxy.server, behind_proxy.proxy
    watcher = FeedClient(server.ws_url, token("alice"))
    await watcher.connect()
    async with producer(server.base_url) as p:
        assert (await p.post("/api/v1/tasks/batch", json=batch_of("before", 20))).status_code == 200

        # Batches in flight while the connections are cut: each lands whole or not at all.
        sent: dict[str, int] = {}

        async def writer(w: int, n: int) -> None:
            for b in range(n):
                resp = await p.post("/api/v1/tasks/batch", json=batch_of(f"fly{w}.{b}", 40))
                sent[f"fly{w}.{b}"] = resp.status_code
                if resp.status_code != 200:
                    assert_503(resp)

        flying = [asyncio.create_task(writer(w, 10)) for w in range(3)]
        await asyncio.sleep(0.15)
        await asyncio.to_thread(proxy.refuse)
        await asyncio.gather(*flying)

        create = await p.post("/api/v1/tasks", json=task_body("down-1"))
        batch = await p.post("/api/v1/tasks/batch", json=batch_of("down-b", 10))
        cancel = await p.post("/api/v1/processes/p-before-0/cancel")
        async with httpx.AsyncClient(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token('alice')}"}
        ) as alice:
            own = await alice.post("/api/v1/tasks/before-1/complete")
            counter = await alice.get("/api/v1/me/counter")
        ready = await p.get("/readyz")
        late = FeedClient(server.ws_url, token("alice"))
        with pytest.raises(ConnectionClosed):
            await late.connect()
        late_code = late.ws.close_code if late.ws is not None else None

        await asyncio.to_thread(proxy.restore)
        again = await until_2xx(lambda: p.post("/api/v1/tasks", json=task_body("down-1")))
        after = await p.post("/api/v1/tasks/batch", json=batch_of("after", 10))
        final = (await p.get("/readyz")).json()

    for resp in (create, batch, cancel, own, counter):
        assert_503(resp)
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unreachable"
    assert late_code == 1013
    assert again.status_code == 201 and after.status_code == 200
    assert final["checks"]["database"] == "ok"
    assert proxy.stats.refused > 0, "the refusal never hit a connection"

    checked = await audit_url(behind_proxy.url)
    ids = checked.statuses
    for prefix, status in sent.items():
        landed = sum(f"{prefix}-{i}" in ids for i in range(40))
        assert landed in (0, 40), f"batch {prefix} ({status}) half applied: {landed}/40"
        if status == 200:
            assert landed == 40
    assert checked.problems == []
    truth = checked.owners["alice"]
    # The client connected all along catches up on everything, including commits whose
    # answer was lost with the connection (found by the periodic sweep).
    await watcher.until_seq(truth.seq, timeout=20)
    await watcher.close()
    assert watcher.count == truth.count and set(watcher.tasks) == truth.running
    print(
        f"\n[pg cut] batches in flight: {sorted(sent.values()).count(200)} ok, "
        f"{sorted(sent.values()).count(503)} answered 503; "
        f"tasks {checked.tasks_by_status}; alice seq {truth.seq} count {truth.count}"
    )


async def test_postgres_blackhole_answers_503_in_bounded_time_and_resumes(
    behind_proxy: Behind,
) -> None:
    server, proxy = behind_proxy.server, behind_proxy.proxy
    watcher = FeedClient(server.ws_url, token("alice"))
    await watcher.connect()
    async with producer(server.base_url) as p:
        assert (await p.post("/api/v1/tasks/batch", json=batch_of("before", 5))).status_code == 200
        await asyncio.to_thread(proxy.blackhole)
        # A partition: nothing answers. Calls must fail by the connect/command timeouts,
        # not hang (the client here would wait 60 s).
        create, batch, ready = await asyncio.gather(
            p.post("/api/v1/tasks", json=task_body("hole-1")),
            p.post("/api/v1/tasks/batch", json=batch_of("hole-b", 20)),
            p.get("/readyz"),
        )
        await asyncio.to_thread(proxy.restore)
        await until_2xx(lambda: p.post("/api/v1/tasks", json=task_body("hole-1")))
        after = await p.post("/api/v1/tasks/batch", json=batch_of("after", 5))

    assert_503(create)
    assert_503(batch)
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unreachable"
    assert after.status_code == 200
    checked = await audit_url(behind_proxy.url)
    ids = checked.statuses
    # The held bytes reached PostgreSQL after the partition healed, but without a commit
    # (the server had given up): the batch answered 503 is absent, all of it.
    assert sum(f"hole-b-{i}" in ids for i in range(20)) in (0, 20)
    assert checked.problems == []
    truth = checked.owners["alice"]
    await watcher.until_seq(truth.seq, timeout=20)
    await watcher.close()
    assert watcher.count == truth.count and set(watcher.tasks) == truth.running


async def test_locked_sqlite_answers_503_busy_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "taskbell.db"
    async with serve(make_settings(f"sqlite+aiosqlite:///{path}")) as live:
        async with live.producer() as p:
            assert (await p.post("/api/v1/tasks", json=task_body("t0"))).status_code == 201
            # The server runs in this event loop: take and drop the lock from a thread, so
            # that a transaction of the server in progress can finish meanwhile.
            locker = sqlite3.connect(
                path, timeout=10, isolation_level=None, check_same_thread=False
            )
            await asyncio.to_thread(locker.execute, "BEGIN EXCLUSIVE")
            try:
                # Held longer than the server's busy timeout (5 s): the write gives up.
                p.timeout = httpx.Timeout(60)
                batch = await p.post("/api/v1/tasks/batch", json=batch_of("locked", 10))
                async with live.person("alice") as alice:
                    counter = await alice.get("/api/v1/me/counter")  # readers go on (WAL)
            finally:
                await asyncio.to_thread(locker.execute, "ROLLBACK")
                locker.close()
            again = await p.post("/api/v1/tasks/batch", json=batch_of("locked", 10))
        checked = await audit_url(live.settings.database_url)
    assert_503(batch, "database_busy")
    assert counter.status_code == 200 and (counter.json()["count"], counter.json()["seq"]) == (1, 1)
    assert again.status_code == 200
    assert [r["status"] for r in again.json()["results"]] == [201] * 10
    assert checked.problems == []
    assert checked.owners["alice"].count == 11
