"""The command line and operations: settings refusal, the token command, demo mode,
/healthz and /readyz, and clean 503s while the database is away."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import psutil
import pytest

from server.errors import ConfigError
from server.settings import Settings
from tests.support.app import PRODUCER_KEY, SECRET
from tests.support.processes import free_port, port_is_open
from tests.support.procfile import procfile_command, start_line
from tests.support.server_proc import REPO_ROOT, ServerProcess
from tests.support.services import PostgresServer
from tests.support.tasks import assert_error, task_body


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKBELL_")}
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=REPO_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_settings_refuse_to_start_without_a_secret_outside_demo() -> None:
    with pytest.raises(ConfigError, match="TASKBELL_SECRET"):
        Settings.from_env({"TASKBELL_PRODUCER_KEYS": "k"})
    with pytest.raises(ConfigError, match="PRODUCER_KEYS"):
        Settings.from_env({"TASKBELL_SECRET": SECRET})
    with pytest.raises(ConfigError, match="PORT"):
        Settings.from_env({"TASKBELL_DEMO": "1", "PORT": "eighty"})
    demo = Settings.from_env({"TASKBELL_DEMO": "1"})
    assert demo.demo and len(demo.secret) >= 32 and demo.producer_keys


def test_settings_accept_usual_database_url_spellings() -> None:
    env = {"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": "a, b ,"}
    pg = Settings.from_env({**env, "DATABASE_URL": "postgres://u@h/db"})
    assert pg.database_url == "postgresql+asyncpg://u@h/db"
    assert pg.producer_keys == frozenset({"a", "b"})


def test_server_refuses_to_start_without_a_secret() -> None:
    result = run_cli(env={"TASKBELL_PRODUCER_KEYS": "k", "PORT": "1"})
    assert result.returncode == 2
    assert "TASKBELL_SECRET" in result.stderr and "Traceback" not in result.stderr


def test_token_command_prints_a_token_on_its_last_line() -> None:
    result = run_cli(
        "token",
        "alice",
        "--ttl",
        "60",
        env={"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": "k"},
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip().splitlines()[-1], SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 60


async def test_demo_mode_serves_the_panel_and_hands_out_tokens(tmp_path: object) -> None:
    env = {"TASKBELL_DEMO": "1", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/demo.db"}
    server = ServerProcess(env)
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as c:
            page = await c.get("/")
            info = (await c.get("/api/v1/demo")).json()
            tok = (await c.post("/api/v1/demo/token", json={"user": "alice"})).json()
            bad = await c.post("/api/v1/demo/token", json={"user": "a b"})
            me = await c.get(
                "/api/v1/me/counter", headers={"Authorization": f"Bearer {tok['token']}"}
            )
            started = await c.post("/api/v1/demo/process", json={"steps": 2, "interval_s": 0})
    finally:
        await asyncio.to_thread(server.stop)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert info["demo"] is True and "alice" in info["users"]
    assert {k: me.json()[k] for k in ("count", "seq", "total")} == {
        "count": 0,
        "seq": 0,
        "total": 0,
    }
    assert_error(bad, 422)
    assert started.status_code == 202 and len(started.json()["tasks"]) == 2
    log = server.log_text()
    assert "DEMO MODE" in log
    assert tok["token"] not in log


async def test_demo_routes_are_404_outside_demo_mode(embedded: object) -> None:
    from tests.support.app import Live

    assert isinstance(embedded, Live)
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        assert_error(await c.post("/api/v1/demo/token", json={"user": "a"}), 404)
        assert (await c.get("/api/v1/demo")).json() == {"demo": False, "users": [], "engine": False}


async def test_readyz_and_clean_503s_while_postgres_is_down(redis_server: object) -> None:
    from tests.support.services import RedisServer

    assert isinstance(redis_server, RedisServer)
    with PostgresServer() as pg:
        pg.start()
        env = {
            "DATABASE_URL": pg.create_database("down"),
            "REDIS_URL": redis_server.url,
            "TASKBELL_SECRET": SECRET,
            "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        }
        with ServerProcess(env) as server:
            server.wait_ready()
            headers = {"Authorization": f"Bearer {PRODUCER_KEY}"}
            async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as c:
                assert (await c.post("/api/v1/tasks", json=task_body("t0"))).status_code == 201
                await asyncio.to_thread(pg.stop)
                health = await c.get("/healthz")
                ready = await c.get("/readyz")
                write = await c.post("/api/v1/tasks", json=task_body("t1"))
                await asyncio.to_thread(pg.start)
                again = None
                for _ in range(50):
                    again = await c.post("/api/v1/tasks", json=task_body("t1"))
                    if again.status_code != 503:
                        break
                    await asyncio.sleep(0.2)
                assert again is not None
                ready_after = await c.get("/readyz")
    assert health.status_code == 200
    assert ready.status_code == 503 and ready.json()["checks"]["database"] == "unreachable"
    assert_error(write, 503, "database_unavailable")
    assert write.headers["retry-after"] == "1"
    assert again.status_code == 201
    assert ready_after.status_code == 200


async def test_procfile_web_line_serves_on_port_and_stops_with_its_group(
    tmp_path: object,
) -> None:
    command = procfile_command("web")
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKBELL_")}
    env = {
        **clean,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "TASKBELL_DEMO": "1",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/procfile.db",
    }
    proc = await start_line(command, env)  # in a group of its own (tests/support/procfile.py)
    group: list[psutil.Process] = []
    servers: list[int] = []
    try:
        status = None
        async with httpx.AsyncClient() as c:
            for _ in range(200):
                try:
                    status = (await c.get(f"http://127.0.0.1:{port}/healthz")).status_code
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        shell = psutil.Process(proc.pid)
        group = [shell, *shell.children(recursive=True)]
        servers = [p.pid for p in group if p.cmdline()[-2:] == ["-m", "server"]]
        os.killpg(proc.pid, signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
        _, alive = await asyncio.to_thread(psutil.wait_procs, group, 15)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left, if anything
        if proc.returncode is None:
            await proc.wait()
    assert status == 200
    assert servers, "the group held the server process"
    assert alive == [], f"left running after the group was stopped: {alive}"
    assert not port_is_open(port)
