"""Demo mode left on by mistake: its routes run only when demo mode made up both the
secret and the producer keys, a given secret is still checked, and no key or secret
the operator configured is ever logged."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from server.changes import FeedPos
from server.errors import ConfigError
from server.settings import Settings
from tests.support.app import key, make_settings, serve
from tests.support.server_proc import ServerProcess
from tests.support.tasks import assert_error

BOTH = ("TASKBELL_SECRET", "TASKBELL_PRODUCER_KEYS")
REAL_KEY = "pk-real-operator-key-5f3a9c"
REAL_SECRET = "real-operator-secret-0123456789abcdef0123"


@pytest.mark.parametrize("made_up", [(), ("TASKBELL_SECRET",), ("TASKBELL_PRODUCER_KEYS",)])
async def test_demo_routes_are_404_when_a_real_secret_or_keys_are_configured(
    sqlite_url: str, made_up: tuple[str, ...]
) -> None:
    async with serve(make_settings(sqlite_url, demo=True, made_up=made_up)) as live:
        async with httpx.AsyncClient(base_url=live.base_url) as c:
            tok = await c.post("/api/v1/demo/token", json={"user": "alice"})
            process = await c.post("/api/v1/demo/process", json={"steps": 1})
            info = await c.get("/api/v1/demo")
        assert await live.parts.reads.counter(key("alice")) == FeedPos(seq=0, count=0)
    assert_error(tok, 404, "not_found")
    assert_error(process, 404, "not_found")
    assert info.json() == {"demo": False, "users": [], "engine": False}


async def test_demo_routes_run_when_demo_mode_made_up_both(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, demo=True, made_up=BOTH)
    async with serve(settings) as live, httpx.AsyncClient(base_url=live.base_url) as c:
        tok = await c.post("/api/v1/demo/token", json={"user": "alice"})
        info = await c.get("/api/v1/demo")
    assert tok.status_code == 200 and tok.json()["token"]
    assert info.json()["demo"] is True
    assert info.json()["engine"] is False  # the made-up process, not a BPMN engine


async def test_demo_info_says_when_the_button_starts_a_real_engine(sqlite_url: str) -> None:
    settings = replace(
        make_settings(sqlite_url, demo=True, made_up=BOTH), engine_url="http://127.0.0.1:9"
    )
    async with serve(settings) as live, httpx.AsyncClient(base_url=live.base_url) as c:
        info = await c.get("/api/v1/demo")
    assert info.json()["engine"] is True


def test_a_short_secret_is_refused_in_demo_mode_too() -> None:
    with pytest.raises(ConfigError, match="32"):
        Settings.from_env({"TASKBELL_DEMO": "1", "TASKBELL_SECRET": "short"})


def test_demo_mode_with_a_real_secret_turns_the_demo_routes_off() -> None:
    settings = Settings.from_env({"TASKBELL_DEMO": "1", "TASKBELL_SECRET": REAL_SECRET})
    assert settings.made_up == ("TASKBELL_PRODUCER_KEYS",)
    assert not settings.demo_routes


async def test_demo_mode_never_logs_the_operators_key_or_secret(tmp_path: Path) -> None:
    env = {
        "TASKBELL_DEMO": "1",
        "TASKBELL_SECRET": REAL_SECRET,
        "TASKBELL_PRODUCER_KEYS": REAL_KEY,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.db",
    }
    server = ServerProcess(env)
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as c:
            tok = await c.post("/api/v1/demo/token", json={"user": "alice"})
    finally:
        await asyncio.to_thread(server.stop)
    log = server.log_text()
    assert "DEMO MODE" in log and "demo routes are off" in log
    assert REAL_KEY not in log and REAL_SECRET not in log
    assert_error(tok, 404, "not_found")


async def test_demo_mode_still_prints_the_made_up_demo_key(tmp_path: Path) -> None:
    env = {"TASKBELL_DEMO": "1", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.db"}
    server = ServerProcess(env)
    await asyncio.to_thread(server.start)
    await asyncio.to_thread(server.stop)
    assert "demo-producer-key" in server.log_text()
