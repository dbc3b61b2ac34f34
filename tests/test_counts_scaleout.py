"""Live counts across two real server processes sharing one Redis and one PostgreSQL: a
change of the postponed count alone, made through one process, reaches a socket on the
other through the broker (the other's sweep is slowed down so that it cannot be what
delivers it), with ``count`` and ``counts``."""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import pytest

from tests.support.app import token
from tests.support.client import FeedClient
from tests.support.server_proc import ServerProcess
from tests.support.services import PostgresServer, RedisServer
from tests.support.tasks import task_body
from tests.test_scaleout import producer_for, server_env

pytestmark = pytest.mark.slow

LATER = "2099-01-01T00:00:00Z"


@pytest.fixture
def pair(
    postgres_server: PostgresServer, redis_server: RedisServer
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    name = f"counts_{random.randrange(16**8):08x}"
    # A sweep far longer than any wait here: only the broker can bring an event over.
    env = server_env(postgres_server.create_database(name), redis_server.url, sweep=600.0)
    with ServerProcess(env) as a, ServerProcess(env) as b:
        a.wait_ready()
        b.wait_ready()
        yield a, b


async def test_a_postponed_only_change_on_one_process_reaches_a_socket_on_the_other(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    async with FeedClient(b.ws_url, token("alice")) as feed:
        assert (await feed.connect())["counts"] == {"running": 0, "postponed": 0}
        async with producer_for(a) as p:
            body = {**task_body("t1", "alice"), "postponed_until": LATER}
            assert (await p.post("/api/v1/tasks", json=body)).status_code == 201
        await feed.until_seq(1, timeout=5)
        event = feed.events[-1]
        assert (event["type"], event["count"], event["counts"]) == (
            "task.removed",
            0,
            {"running": 0, "postponed": 1},
        )
        async with producer_for(a) as p:
            assert (await p.post("/api/v1/tasks/t1/cancel")).status_code == 200
        await feed.until_seq(2, timeout=5)
        assert feed.events[-1]["counts"] == {"running": 0, "postponed": 0}
    async with httpx.AsyncClient(
        base_url=b.base_url, headers={"Authorization": f"Bearer {token('alice')}"}
    ) as person:
        counter = (await person.get("/api/v1/me/counter")).json()
    assert (counter["seq"], counter["counts"]) == (2, {"running": 0, "postponed": 0})
