"""The engine as a program: installed with the project (``python -m engine`` from any
folder, ``spiffworkflow`` among the dependencies, the ``taskbell-engine`` script, the
samples in the package), its settings from the environment (``ENGINE_PORT`` 8100 by
default, ``TASKBELL_PRODUCER_KEY`` required), the instance API's answers to bad
requests, and the ``Procfile``'s ``engine:`` line running it next to a real Taskbell."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from importlib.metadata import distribution
from pathlib import Path

import httpx
import pytest

from engine.app import SAMPLES, Config, ConfigError
from tests.engine.support import EngineHandle
from tests.support.app import PRODUCER_KEY, Live
from tests.support.processes import free_port
from tests.support.procfile import procfile_command, start_line
from tests.support.server_proc import REPO_ROOT


def test_settings_from_the_environment(tmp_path: Path) -> None:
    config = Config.from_env(None, {"TASKBELL_PRODUCER_KEY": " pk-1 "})
    assert (config.port, config.host, config.db) == (8100, "127.0.0.1", "engine.db")
    assert (config.taskbell_url, config.producer_key) == ("http://127.0.0.1:8000", "pk-1")
    assert config.bpmn_dir == SAMPLES and config.public == "http://127.0.0.1:8100"
    given = Config.from_env(
        str(tmp_path),
        {
            "TASKBELL_PRODUCER_KEY": "pk-2",
            "TASKBELL_URL": "http://tb:8000",
            "ENGINE_PORT": "9100",
            "ENGINE_PUBLIC_URL": "https://engine.example/",
        },
    )
    assert (given.port, given.taskbell_url, given.bpmn_dir) == (9100, "http://tb:8000", tmp_path)
    assert given.public == "https://engine.example"
    with pytest.raises(ConfigError, match="TASKBELL_PRODUCER_KEY is not set"):
        Config.from_env(None, {})
    with pytest.raises(ConfigError, match="not a number"):
        Config.from_env(None, {"TASKBELL_PRODUCER_KEY": "k", "ENGINE_PORT": "eighty"})
    with pytest.raises(ConfigError, match="not a folder"):
        Config.from_env(str(tmp_path / "missing"), {"TASKBELL_PRODUCER_KEY": "k"})


def test_installed_with_the_project() -> None:
    dist = distribution("taskbell")
    assert any(r.lower().startswith("spiffworkflow") for r in dist.requires or [])
    scripts = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
    assert scripts["taskbell-engine"] == "engine.__main__:main"
    assert sorted(p.name for p in SAMPLES.glob("*.bpmn")) == [
        "customer_onboarding.bpmn",
        "escalation.bpmn",
        "invoice_approval.bpmn",
    ]


def test_python_m_engine_runs_from_any_folder(tmp_path: Path) -> None:
    """From a folder that is not the repository, with no PYTHONPATH: the install finds it.
    Without a producer key it says so and exits 2 (no traceback)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKBELL_", "ENGINE_"))}
    env.pop("PYTHONPATH", None)
    helped = subprocess.run(
        [sys.executable, "-m", "engine", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr
    assert "--bpmn DIR" in helped.stdout and "TASKBELL_PRODUCER_KEY" in helped.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "engine"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "engine: TASKBELL_PRODUCER_KEY is not set (demo mode: demo-producer-key)"
    )


async def test_bad_requests_to_the_instance_api(engine: EngineHandle) -> None:
    async with engine.client() as c:
        answers = [
            await c.post("/instances", content=b"{not json"),
            await c.post("/instances", json=["invoice_approval"]),
            await c.post("/instances", json={"process": "invoice_approval", "extra": 1}),
            await c.post("/instances", json={"process": "invoice_approval", "id": 7}),
            await c.post("/instances", json={"process": "invoice_approval", "id": "a b"}),
            await c.post("/instances", json={"process": "no_such_process"}),
            await c.get("/instances/no-such-instance"),
        ]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (400, "malformed_json"),
        (422, "invalid"),
        (422, "invalid"),
        (422, "invalid"),
        (422, "invalid"),
        (404, "process_not_found"),
        (404, "instance_not_found"),
    ]
    for answer in answers:
        assert "Traceback" not in answer.text
    async with engine.client() as c:
        assert (await c.get("/instances")).json() == {"instances": []}


async def test_the_procfile_engine_line_runs_the_engine(taskbell: Live, tmp_path: Path) -> None:
    command = procfile_command("engine")
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TASKBELL_", "ENGINE_"))}
    env = {
        **clean,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO_ROOT),  # this checkout's engine
        "PORT": str(port),  # the engine: line listens on $PORT, as a platform gives it
        "ENGINE_HOST": "127.0.0.1",
        "ENGINE_DB": str(tmp_path / "procfile-engine.db"),
        "TASKBELL_URL": taskbell.base_url,
        "TASKBELL_PRODUCER_KEY": PRODUCER_KEY,
    }
    proc = await start_line(command, env)
    health: dict[str, object] = {}
    processes: list[str] = []
    try:
        async with httpx.AsyncClient(trust_env=False) as c:
            for _ in range(400):
                with contextlib.suppress(httpx.TransportError):
                    health = (await c.get(f"http://127.0.0.1:{port}/healthz")).json()
                    if health.get("registered"):
                        processes = [
                            p["id"]
                            for p in (await c.get(f"http://127.0.0.1:{port}/processes")).json()[
                                "processes"
                            ]
                        ]
                        break
                await asyncio.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert health.get("registered") is True, health
    assert sorted(processes) == ["customer_onboarding", "escalation", "invoice_approval"]
