"""Demo mode's "Start sample process" on a real engine: with ``TASKBELL_ENGINE_URL`` set,
``POST /api/v1/demo/process`` starts a BPMN instance on the engine (invoice approval
unless the body names another process), after putting the demo users into the samples'
role queues; without it, the made-up process as before. A real Taskbell in demo mode, a
real engine, real webhooks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.errors import ConfigError
from server.settings import Settings
from tests.engine.support import EngineHandle, People, engine_config, fast, serve_engine
from tests.support.app import Live, make_settings, serve
from tests.support.processes import free_port
from tests.support.tasks import assert_error

MADE_UP = ("TASKBELL_SECRET", "TASKBELL_PRODUCER_KEYS")


@dataclass
class Demo:
    taskbell: Live
    engine: EngineHandle
    people: People

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.taskbell.base_url, trust_env=False, timeout=15)


@pytest.fixture
async def demo(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Demo]:
    port = free_port()
    settings = make_settings(
        sqlite_url, demo=True, made_up=MADE_UP, engine_url=f"http://127.0.0.1:{port}"
    )
    async with serve(fast(settings)) as live:
        config = engine_config(live.base_url, tmp_path / "engine.db", port=port)
        async with serve_engine(config) as engine:
            yield Demo(live, engine, People(live.base_url))


async def _members(people: People, role: str) -> list[str]:
    async with people.producer() as c:
        resp = await c.get(f"/api/v1/roles/{role}")
    assert resp.status_code == 200, resp.text
    members: list[str] = resp.json()["members"]
    return members


async def test_the_panels_button_starts_invoice_approval_on_the_engine(demo: Demo) -> None:
    async with demo.client() as c:
        started = await c.post("/api/v1/demo/process", content=b"{}")  # what the panel sends
    assert started.status_code == 202, started.text
    body = started.json()
    iid = body["instance_id"]
    assert iid.startswith("invoice_approval-") and body["process"] == "invoice_approval"
    assert body["tasks"] == [f"{iid}.approve_invoice.1"]
    # The demo users are in the samples' queues, so the approval shows for all of them.
    for role in ("approvers", "managers"):
        assert sorted(await _members(demo.people, role)) == ["alice", "bob", "carol"]
    people = demo.people
    approve = await people.wait_task("carol", iid, "approve_invoice")
    assert approve["role"] == "approvers" and approve["actions"][1]["comment"] == "required"
    await people.wait_task("bob", iid, "approve_invoice")
    # alice (the sample's requester, an approver too) claims and approves it: her
    # "Invoice approved" step follows the one she just completed.
    await people.claim("alice", approve["id"])
    await people.complete("alice", approve["id"], "approve")
    told = await people.wait_task("alice", iid, "tell_approved", feeds="own")
    assert told["title"] == "Invoice INV-7 approved"
    assert told["follows"] == approve["id"]
    await people.complete("alice", told["id"])
    await people.wait_process(iid, "completed")


async def test_another_sample_with_its_data(demo: Demo) -> None:
    async with demo.client() as c:
        started = await c.post(
            "/api/v1/demo/process",
            json={"process": "customer_onboarding", "data": {"customer": "Initech"}},
        )
        unknown = await c.post("/api/v1/demo/process", json={"process": "no_such_process"})
        bad = await c.post("/api/v1/demo/process", json={"process": "a b"})
    assert started.status_code == 202, started.text
    iid = started.json()["instance_id"]
    assert sorted(started.json()["tasks"]) == [
        f"{iid}.check_documents.1",
        f"{iid}.set_up_account.1",
    ]
    docs = await demo.people.wait_task("carol", iid, "check_documents")
    assert docs["title"] == "Check Initech's documents" and docs["due_at"] is not None
    assert_error(unknown, 502, "engine_refused")
    assert "no startable process 'no_such_process'" in unknown.json()["error"]["message"]
    assert_error(bad, 422)


async def test_an_engine_that_is_not_running_is_a_clear_503(sqlite_url: str) -> None:
    settings = make_settings(
        sqlite_url, demo=True, made_up=MADE_UP, engine_url=f"http://127.0.0.1:{free_port()}"
    )
    async with serve(settings) as live:
        async with httpx.AsyncClient(base_url=live.base_url, trust_env=False) as c:
            resp = await c.post("/api/v1/demo/process", json={})
        assert_error(resp, 503, "engine_unavailable")
        assert "cannot be reached" in resp.json()["error"]["message"]
        assert sorted(await _members(People(live.base_url), "approvers")) == [
            "alice",
            "bob",
            "carol",
        ]


async def test_without_the_engine_the_made_up_process_runs(sqlite_url: str) -> None:
    async with serve(make_settings(sqlite_url, demo=True, made_up=MADE_UP)) as live:
        async with httpx.AsyncClient(base_url=live.base_url, trust_env=False) as c:
            resp = await c.post("/api/v1/demo/process", json={"steps": 2, "interval_s": 0})
        assert resp.status_code == 202, resp.text
        assert resp.json()["instance_id"].startswith("demo-")
        assert len(resp.json()["tasks"]) == 2
        assert sorted(await _members(People(live.base_url), "managers")) == [
            "alice",
            "bob",
            "carol",
        ]


def test_the_engine_url_setting() -> None:
    env = {"TASKBELL_DEMO": "1"}
    assert Settings.from_env(env).engine_url == ""
    given = Settings.from_env({**env, "TASKBELL_ENGINE_URL": " http://127.0.0.1:8100/ "})
    assert given.engine_url == "http://127.0.0.1:8100"
    for bad in ("127.0.0.1:8100", "ftp://engine", "http://"):
        with pytest.raises(ConfigError, match="TASKBELL_ENGINE_URL"):
            Settings.from_env({**env, "TASKBELL_ENGINE_URL": bad})
