"""Migrations: an existing database upgrades in place, and the migrated schema is exactly
what the models describe (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import server.delivery.tables  # registers the delivery tables
import server.models  # noqa: F401  (registers the task tables)
from server.migrate import upgrade
from tests.support.app import PRODUCER_KEY, SECRET
from tests.support.server_proc import REPO_ROOT, ServerProcess
from tests.support.services import PostgresServer


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/migrate.db"
    pg: PostgresServer = request.getfixturevalue("postgres_server")
    return pg.create_database()


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
    finally:
        await engine.dispose()
    assert diff == []


async def test_an_existing_database_upgrades_in_place_and_keeps_its_data(
    database_url: str,
) -> None:
    await asyncio.to_thread(upgrade, database_url, "0001")
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO feed (owner, seq, count) VALUES ('alice', 7, 2)"))
        await asyncio.to_thread(upgrade, database_url)
        await asyncio.to_thread(upgrade, database_url)  # a second run changes nothing
        async with engine.connect() as conn:
            row = (await conn.execute(text("SELECT tenant, feed, seq, count FROM feed"))).one()
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).one()
    finally:
        await engine.dispose()
    # 0004: the owner's feed is now the feed "user:alice" of the tenant "default"
    assert tuple(row) == ("default", "user:alice", 7, 2)
    assert version[0] != "0001"


def cli_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m server`` child: ours without Taskbell's own."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("TASKBELL_")}
    keep.pop("DATABASE_URL", None)
    return {
        **keep,
        "DATABASE_URL": database_url,
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        **extra,
    }


async def migrate_cli(database_url: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        "migrate",
        cwd=REPO_ROOT,
        env=cli_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def schema_diff(database_url: str) -> list[Any]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_diff)
    finally:
        await engine.dispose()


async def table_names(database_url: str) -> list[str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return sorted(names)


async def test_the_migrate_command_creates_the_schema(database_url: str) -> None:
    code, out = await migrate_cli(database_url)
    assert code == 0, out
    assert "database is up to date" in out
    assert await schema_diff(database_url) == []


async def test_three_migrate_commands_at_once_on_one_new_postgres_database(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database()
    results = await asyncio.gather(*(migrate_cli(url) for _ in range(3)))
    assert [code for code, _ in results] == [0, 0, 0], results
    assert await schema_diff(url) == []
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    finally:
        await engine.dispose()
    assert len(versions) == 1


async def test_a_server_with_no_migrate_leaves_an_empty_database_empty(
    database_url: str,
) -> None:
    with ServerProcess(cli_env(database_url, TASKBELL_NO_MIGRATE="1")) as server:
        await asyncio.to_thread(server.start)  # answers once its start-up has run
    assert await table_names(database_url) == []
