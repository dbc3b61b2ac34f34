"""The real services the test suite relies on start, answer, and restart in place."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tests.support.app import uvicorn_serving
from tests.support.services import PostgresServer, RedisServer, free_port


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_answers_ping_at_its_url() -> None:
    with RedisServer() as redis:
        assert redis.ping()
        assert redis.url == f"redis://127.0.0.1:{redis.port}/0"


def test_redis_restarts_on_the_same_port_after_kill() -> None:
    with RedisServer() as redis:
        port, pid = redis.port, redis.pid
        redis.kill()
        assert not redis.ping()
        redis.start()
        assert redis.ping()
        assert (redis.port, redis.pid != pid) == (port, True)


def test_suspended_redis_does_not_answer_until_resumed() -> None:
    with RedisServer() as redis:
        redis.suspend()
        assert not redis.ping(timeout=0.2)
        redis.resume()
        assert redis.ping()


def test_redis_close_leaves_no_process() -> None:
    redis = RedisServer().start()
    redis.close()
    assert not redis.running


async def test_postgres_answers_select_1(postgres: PostgresServer) -> None:
    conn = await asyncpg.connect(postgres.dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


async def test_create_database_returns_an_empty_database(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    assert url.startswith(f"postgresql+asyncpg://postgres@127.0.0.1:{postgres.port}/test_")
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0
    finally:
        await conn.close()


def test_postgres_keeps_data_across_stop_and_start(postgres: PostgresServer) -> None:
    name = "restart_check"
    postgres.create_database(name)
    postgres.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (42)", database=name)
    postgres.stop()
    postgres.start()
    assert postgres.psql("SELECT x FROM t", database=name).strip() == "42"
    postgres.drop_database(name)


def test_postgres_restarts_on_the_same_port_after_kill(postgres: PostgresServer) -> None:
    port, pid = postgres.port, postgres.pid
    postgres.kill()
    postgres.start()
    assert (postgres.port, postgres.pid != pid) == (port, True)
    assert postgres.psql("SELECT 1").strip() == "1"


async def test_an_in_process_server_binds_its_own_port_and_a_taken_one_is_an_error() -> None:
    app = Starlette(routes=[Route("/", lambda _: PlainTextResponse("ok"))])
    async with uvicorn_serving(app, 0, lifespan="off") as server:
        port = server.config.port
        with socket.socket() as other, pytest.raises(OSError):
            other.bind(("127.0.0.1", port))  # held from the moment it was chosen
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
        # A port someone else holds: a plain error, not uvicorn's SystemExit (which would
        # break the event loop of every later test on this worker).
        with pytest.raises(RuntimeError, match="did not start"):
            async with uvicorn_serving(app, port, lifespan="off"):
                pass
