"""Migrations: an existing database upgrades in place, and the migrated schema is exactly
what the models describe (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import server.delivery.tables  # registers the delivery tables
import server.models  # noqa: F401  (registers the task tables)
from server.migrate import upgrade
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
            row = (await conn.execute(text("SELECT seq, count FROM feed"))).one()
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).one()
    finally:
        await engine.dispose()
    assert tuple(row) == (7, 2)
    assert version[0] != "0001"
