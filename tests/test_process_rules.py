"""Process lifecycle defects found by a careful user: an instance whose steps were all
canceled did not complete; disabling a definition stops only new instances; an unknown
definition cannot be switched. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.support.app import Live
from tests.support.tasks import assert_error, task_body


def step(tid: str, instance: str, name: str = "Payroll") -> dict[str, Any]:
    return task_body(tid, "alice", process={"instance_id": instance, "name": name})


async def test_an_instance_whose_steps_were_all_canceled_ends_canceled(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=step("a1", "pa"))
        await p.post("/api/v1/tasks", json=step("a2", "pa"))
        await p.post("/api/v1/tasks/a1/cancel")
        await p.post("/api/v1/tasks/a2/cancel")
        inst = (await p.get("/api/v1/processes/pa")).json()
        stats = (await p.get("/api/v1/processes/stats", params={"name": "Payroll"})).json()
    assert inst["status"] == "canceled" and inst["ended_at"] is not None
    (payroll,) = stats["processes"]
    assert payroll["counts"]["canceled"] == 1 and payroll["counts"]["completed"] == 0
    assert payroll["duration_ms"]["completed"] == 0 and payroll["duration_ms"]["mean"] is None


async def test_an_instance_with_one_completed_step_ends_completed(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=step("b1", "pb"))
        await p.post("/api/v1/tasks", json=step("b2", "pb"))
        await p.post("/api/v1/tasks/b1/cancel")
        await p.post("/api/v1/tasks/b2/complete")
        inst = (await p.get("/api/v1/processes/pb")).json()
    assert inst["status"] == "completed"


async def test_a_running_instance_of_a_disabled_process_adds_its_next_step(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/processes", json={"id": "pc", "name": "Payroll", "expect_more": True})
        await p.post("/api/v1/tasks", json=step("c1", "pc"))
        off = await p.post("/api/v1/process-definitions/Payroll/disable")
        await p.post("/api/v1/tasks/c1/complete")
        nxt = await p.post("/api/v1/tasks", json=step("c2", "pc"))
        batch = await p.post(
            "/api/v1/tasks/batch",
            json={
                "ops": [
                    {"op": "create", "task": step("c3", "pc")},
                    {"op": "create", "task": step("d1", "pd")},
                ]
            },
        )
    assert off.status_code == 200
    assert nxt.status_code == 201, nxt.text
    results = batch.json()["results"]
    assert results[0]["status"] == 201
    assert results[1]["status"] == 409 and results[1]["error"]["code"] == "process_disabled"


async def test_switching_an_unknown_process_is_404(live: Live) -> None:
    async with live.producer() as p:
        off = await p.post("/api/v1/process-definitions/Nobody/disable")
        on = await p.post("/api/v1/process-definitions/Nobody/enable")
        listed = (await p.get("/api/v1/process-definitions")).json()["processes"]
        await p.post("/api/v1/tasks", json=step("e1", "pe", "Known"))
        known = await p.post("/api/v1/process-definitions/Known/disable")
    assert_error(off, 404, "process_not_found")
    assert_error(on, 404, "process_not_found")
    assert all(d["name"] != "Nobody" for d in listed)
    assert known.json() == {"name": "Known", "disabled": True}
