"""Restarts in the middle of a process: the engine killed (``python -m engine``, SIGKILL)
and Taskbell killed (``python -m server``, SIGKILL). Nothing is lost, nothing repeated:
Taskbell retries its webhook deliveries until the engine takes them, the engine retries
its calls until Taskbell takes them, and each lands once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from tests.engine.support import (
    FAST_ENV,
    EngineProcess,
    People,
    copy_samples,
    engine_config,
    eventually,
    serve_engine,
)
from tests.support.app import Live
from tests.support.server_proc import ServerProcess

HERE = Path(__file__).resolve().parent


async def _deliveries(people: People, task_id: str) -> list[dict[str, Any]]:
    async with people.producer() as c:
        endpoints = (await c.get("/api/v1/webhooks")).json()["endpoints"]
        found = []
        for endpoint in endpoints:
            resp = await c.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries")
            found += [d for d in resp.json()["deliveries"] if d["task_id"] == task_id]
    return found


async def _retried(people: People, task_id: str) -> bool:
    """The completion of ``task_id`` was attempted and failed at least once."""
    return any(
        d["status"] == "pending" and d["attempts"] >= 1 for d in await _deliveries(people, task_id)
    )


def proc_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10)


async def _engine_view(base_url: str, iid: str) -> dict[str, Any]:
    async with proc_client(base_url) as c:
        body: dict[str, Any] = (await c.get(f"/instances/{iid}")).json()
    return body


async def test_engine_killed_in_the_middle(taskbell: Live, people: People, tmp_path: Path) -> None:
    folder = copy_samples(tmp_path / "bpmn")
    (folder / "broken.bpmn").write_bytes((HERE / "bpmn" / "broken.bpmn").read_bytes())
    config = engine_config(taskbell.base_url, tmp_path / "engine.db", bpmn=folder)
    with EngineProcess(config) as proc:
        # A file it cannot parse is a clear error at load; the others still run.
        await eventually(lambda: "cannot load broken.bpmn: XMLSyntaxError" in proc.log_text())
        await eventually(lambda: "registered webhook endpoint" in proc.log_text())
        started = time.monotonic()
        async with proc_client(config.public) as c:
            resp = await c.post("/instances", json={"process": "invoice_approval", "data": {}})
            assert resp.status_code == 201, resp.text
            invoice = resp.json()["id"]
            resp = await c.post(
                "/instances", json={"process": "escalation", "data": {"escalate_after": "PT3S"}}
            )
            escalation = resp.json()["id"]
        approve = await people.wait_task("bob", invoice, "approve_invoice")
        handle = await people.wait_task("alice", escalation, "handle_request")

        proc.kill()
        # While the engine is down: bob completes (Taskbell retries the webhook), and the
        # escalation's timer comes due.
        await people.complete("bob", approve["id"], "approve")
        await eventually(lambda: _retried(people, approve["id"]), what="a failed attempt")
        await asyncio.sleep(max(0.0, started + 3.3 - time.monotonic()))
        assert [t["id"] for t in await people.running("alice")] == [handle["id"]]

        proc.start()
        told = await people.wait_task("alice", invoice, "tell_approved")
        review = await people.wait_task("carol", escalation, "manager_review")
        await eventually(lambda: _status(people, handle["id"], "canceled"))

        await people.complete("alice", told["id"])
        await people.complete("carol", review["id"], "resolved")
        invoice_done = await people.wait_process(invoice, "completed")
        escalation_done = await people.wait_process(escalation, "completed")

    # Each step exactly once, in Taskbell and in the engine.
    assert [s["id"] for s in invoice_done["steps"]] == [approve["id"], told["id"]]
    assert [s["id"] for s in escalation_done["steps"]] == [handle["id"], review["id"]]
    deliveries = await _deliveries(people, approve["id"])
    completed = [d for d in deliveries if d["event_type"] == "task.completed"]
    assert len(completed) == 1 and completed[0]["status"] == "delivered"
    assert completed[0]["attempts"] >= 2


async def _status(people: People, task_id: str, status: str) -> bool:
    async with people.producer() as c:
        return bool((await c.get(f"/api/v1/tasks/{task_id}")).json()["status"] == status)


async def test_taskbell_killed_in_the_middle(tmp_path: Path) -> None:
    env = {**FAST_ENV, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'taskbell.db'}"}
    with ServerProcess(env) as server:
        people = People(server.base_url)
        await people.set_roles()
        config = engine_config(server.base_url, tmp_path / "engine.db")
        async with serve_engine(config) as engine:
            first = await engine.start("invoice_approval", invoice_id="INV-1")
            approve = await people.wait_task("bob", first, "approve_invoice")
        # The engine is down when bob completes: the delivery waits in Taskbell's outbox.
        await people.complete("bob", approve["id"], "approve")
        await eventually(lambda: _retried(people, approve["id"]), what="a failed attempt")
        server.kill()  # Taskbell crashes with the delivery still pending

        async with serve_engine(config, wait_registered=False) as engine:
            # Taskbell is down: the engine takes a new instance and keeps its calls.
            second = await engine.start("invoice_approval", invoice_id="INV-2")
            assert (await engine.view(second))["pending_calls"] >= 2
            server.start()
            await engine.wait_registered()
            told = await people.wait_task("alice", first, "tell_approved")
            assert told["title"] == "Invoice INV-1 approved"
            approve_2 = await people.wait_task("bob", second, "approve_invoice")
            await eventually(lambda: _no_pending(engine.base_url, second))
            view = await engine.view(first)

        deliveries = await _deliveries(people, approve["id"])
        completed = [d for d in deliveries if d["event_type"] == "task.completed"]
        assert len(completed) == 1 and completed[0]["status"] == "delivered"
        assert completed[0]["attempts"] >= 2
        assert [s["id"] for s in view["steps"]] == [approve["id"], told["id"]]
        process = await people.process(first)
        assert [s["id"] for s in process["steps"]] == [approve["id"], told["id"]]
        assert [s["id"] for s in (await people.process(second))["steps"]] == [approve_2["id"]]


async def _no_pending(base_url: str, iid: str) -> bool:
    return bool((await _engine_view(base_url, iid))["pending_calls"] == 0)
