"""Fixtures of the engine tests: a real Taskbell (embedded, quick webhook retries), the
engine serving the sample processes beside it, and Taskbell's API as people (with the
samples' role queues set up)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engine.support import EngineHandle, People, engine_config, fast, serve_engine
from tests.support.app import Live, make_settings, serve


@pytest.fixture
async def taskbell(sqlite_url: str) -> AsyncIterator[Live]:
    async with serve(fast(make_settings(sqlite_url))) as live:
        yield live


@pytest.fixture
async def engine(taskbell: Live, tmp_path: Path) -> AsyncIterator[EngineHandle]:
    async with serve_engine(engine_config(taskbell.base_url, tmp_path / "engine.db")) as e:
        yield e


@pytest.fixture
async def people(taskbell: Live) -> People:
    """People, with the samples' role queues set up (``approvers``: bob and carol,
    ``managers``: carol)."""
    found = People(taskbell.base_url)
    await found.set_roles()
    return found
