"""Shared fixtures: real Redis and PostgreSQL for the session, and a real uvicorn
serving the app in the test's event loop on a free port (see tests/support/app.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from server.settings import Settings
from tests.support.app import Live, make_settings, serve
from tests.support.services import PostgresServer, RedisServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``, as scripts/test runs it) each test file
    runs on one worker, so a module-scoped fixture (a Redis Cluster, say) starts once;
    the browser tests all stay together, as their Playwright fixtures are package-scoped
    (see tests/browser/conftest.py): split, they would start Chromium once per worker and
    put asyncio tests between them."""
    here = Path(__file__).parent
    browser = here / "browser"
    for item in items:
        group = "browser" if browser in item.path.parents else str(item.path.relative_to(here))
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        server.start()
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        server.start()
        yield server


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'taskbell.db'}"


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


@pytest.fixture
def output_dir() -> Path:
    path = Path(os.environ.get("TASKBELL_TEST_OUTPUT", "test-output"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> Settings:
    """Both ways to run: embedded (SQLite + memory broker) and scale-out (PG + Redis)."""
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
        return make_settings(url)
    pg: PostgresServer = request.getfixturevalue("postgres_server")
    redis: RedisServer = request.getfixturevalue("redis_server")
    return make_settings(pg.create_database(), redis.url)


@pytest.fixture
async def live(backend: Settings) -> AsyncIterator[Live]:
    async with serve(backend) as running:
        yield running


@pytest.fixture
async def embedded(sqlite_url: str) -> AsyncIterator[Live]:
    """The embedded default only, for tests that need not run twice."""
    async with serve(make_settings(sqlite_url)) as running:
        yield running
