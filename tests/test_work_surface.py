"""Work-surface fields over the API, on SQLite and PostgreSQL: due dates, priorities,
actions and the decisions taken from them, and the overdue flag that the clock sets
exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.app import Live, token
from tests.support.client import FeedClient
from tests.support.tasks import assert_error, task_body

APPROVE = [
    {"id": "approve", "label": "Approve"},
    {"id": "reject", "label": "Reject", "comment": "required"},
    {"id": "later", "label": "Ask later", "comment": "optional"},
]


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_new_fields_are_stored_and_shown(live: Live) -> None:
    due = "2031-05-01T09:00:00+02:00"
    async with live.producer() as p:
        r = await p.post(
            "/api/v1/tasks",
            json=task_body("t1", due_at=due, priority="urgent", actions=APPROVE),
        )
        assert r.status_code == 201, r.text
        task = r.json()
        plain = (await p.post("/api/v1/tasks", json=task_body("t2"))).json()
        got = (await p.get("/api/v1/tasks/t1")).json()
    assert task == got
    assert task["due_at"] == "2031-05-01T07:00:00.000000Z"
    assert (task["priority"], task["overdue"]) == ("urgent", False)
    assert [a["id"] for a in task["actions"]] == ["approve", "reject", "later"]
    assert task["actions"][0]["comment"] == "none"  # the default rule
    assert (task["outcome"], task["comment"], task["completed_by"]) == (None, None, None)
    assert (plain["due_at"], plain["priority"], plain["actions"]) == (None, "normal", None)


@pytest.mark.parametrize(
    "field",
    [
        {"due_at": "2031-05-01T09:00:00"},  # no zone
        {"due_at": "tomorrow"},
        {"priority": "extreme"},
        {"priority": 3},
        {"actions": []},
        {"actions": [{"id": f"a{i}", "label": "A"} for i in range(6)]},  # over 5
        {"actions": [{"id": "a", "label": "A"}, {"id": "a", "label": "B"}]},  # twice
        {"actions": [{"id": "a b", "label": "A"}]},  # not an id
        {"actions": [{"id": "a", "label": "   "}]},  # blank label
        {"actions": [{"id": "a", "label": "A", "comment": "maybe"}]},
        {"actions": [{"id": "a", "label": "A", "extra": 1}]},
        {"actions": "approve"},
    ],
)
async def test_bad_field_values_are_422_and_store_nothing(
    live: Live, field: dict[str, Any]
) -> None:
    async with live.producer() as p:
        r = await p.post("/api/v1/tasks", json=task_body("t1", **field))
        assert_error(r, 422)
        assert (await p.get("/api/v1/tasks/t1")).status_code == 404
        assert (await p.post("/api/v1/tasks", json=task_body("t2"))).status_code == 201
        patched = await p.patch("/api/v1/tasks/t2", json=field)
        assert_error(patched, 422)
        batch = await p.post(
            "/api/v1/tasks/batch", json={"ops": [{"op": "update", "id": "t2", "changes": field}]}
        )
        assert_error(batch, 422)
        assert (await p.get("/api/v1/tasks/t2")).json()["priority"] == "normal"


async def test_patch_and_batch_change_due_priority_and_actions_live(live: Live) -> None:
    async with live.producer() as p:
        assert (await p.post("/api/v1/tasks", json=task_body("t1"))).status_code == 201
    async with FeedClient(live.ws_url, token("alice")) as alice:
        await alice.connect()
        async with live.producer() as p:
            r = await p.patch(
                "/api/v1/tasks/t1", json={"priority": "high", "due_at": "2031-01-01T00:00:00Z"}
            )
            assert r.status_code == 200 and r.json()["priority"] == "high"
            ops = [{"op": "update", "id": "t1", "changes": {"actions": APPROVE[:1]}}]
            r = await p.post("/api/v1/tasks/batch", json={"ops": ops})
            assert r.json()["results"][0]["status"] == 200
        first, second = await alice.recv(), await alice.recv()
    assert (first["type"], first["task"]["priority"]) == ("task.updated", "high")
    assert first["task"]["due_at"] == "2031-01-01T00:00:00.000000Z"
    assert second["task"]["actions"] == [{"id": "approve", "label": "Approve", "comment": "none"}]


async def test_a_decision_completes_with_outcome_comment_and_who(live: Live) -> None:
    async with live.producer() as p:
        for tid in ("t1", "t2", "t3", "t4"):
            assert (
                await p.post("/api/v1/tasks", json=task_body(tid, actions=APPROVE))
            ).status_code == 201
        assert (await p.post("/api/v1/tasks", json=task_body("t5"))).status_code == 201
    async with live.person("alice") as me:
        # a person must decide, with one of the actions, and a comment where required
        assert_error(await me.post("/api/v1/tasks/t1/complete"), 422, "outcome_required")
        assert_error(
            await me.post("/api/v1/tasks/t1/complete", json={"outcome": "maybe"}),
            422,
            "unknown_outcome",
        )
        for comment in (None, "", "   "):
            body: dict[str, Any] = {"outcome": "reject"}
            if comment is not None:
                body["comment"] = comment
            assert_error(
                await me.post("/api/v1/tasks/t1/complete", json=body), 422, "comment_required"
            )
        assert_error(
            await me.post("/api/v1/tasks/t1/complete", json={"outcome": "approve", "x": 1}), 422
        )
        assert_error(await me.post("/api/v1/tasks/t1/complete", json={"comment": "x" * 4001}), 422)
        done = await me.post(
            "/api/v1/tasks/t1/complete", json={"outcome": "reject", "comment": "Wrong amount"}
        )
        assert done.status_code == 200, done.text
        later = await me.post("/api/v1/tasks/t2/complete", json={"outcome": "later"})
        # a task without actions takes a completion without a decision, as before
        plain = await me.post("/api/v1/tasks/t5/complete")
    t1 = done.json()
    assert (t1["status"], t1["outcome"], t1["comment"], t1["completed_by"]) == (
        "completed",
        "reject",
        "Wrong amount",
        "alice",
    )
    assert (later.json()["outcome"], later.json()["comment"]) == ("later", None)
    assert plain.status_code == 200 and plain.json()["outcome"] is None
    async with live.producer() as p:
        # the producer may complete without a decision; completed_by stays null
        by_engine = await p.post("/api/v1/tasks/t3/complete")
        assert by_engine.status_code == 200
        assert (by_engine.json()["outcome"], by_engine.json()["completed_by"]) == (None, None)
        batch = await p.post(
            "/api/v1/tasks/batch",
            json={"ops": [{"op": "complete", "id": "t4", "outcome": "approve"}]},
        )
        assert batch.json()["results"][0]["task"]["outcome"] == "approve"
        # the activities view (the person's list) shows what was decided
    async with live.person("alice") as me:
        listed = (await me.get("/api/v1/me/tasks", params={"status": "completed"})).json()
    decided = {t["id"]: t["outcome"] for t in listed["tasks"]}
    assert decided == {"t1": "reject", "t2": "later", "t3": None, "t4": "approve", "t5": None}


async def test_a_running_task_past_its_due_time_gets_one_update_flagging_it(live: Live) -> None:
    async with live.producer() as p:
        r = await p.post("/api/v1/tasks", json=task_body("t1", due_at=soon(1.5)))
        assert r.status_code == 201 and r.json()["overdue"] is False
        later = soon(3600)
        assert (
            await p.post("/api/v1/tasks", json=task_body("t2", due_at=later))
        ).status_code == 201
    async with FeedClient(live.ws_url, token("alice")) as alice:
        await alice.connect()
        msg = await alice.recv(10)
        assert (msg["type"], msg["reason"], msg["task"]["id"]) == ("task.updated", "overdue", "t1")
        assert msg["task"]["overdue"] is True
        await asyncio.sleep(1.0)  # the clock ticks four times a second: nothing more comes
        assert [m["type"] for m in await alice.before_pong()] == []
        # a new due time in the future takes the flag off; it comes back when that passes
        async with live.producer() as p:
            r = await p.patch("/api/v1/tasks/t1", json={"due_at": soon(1.0)})
            assert r.json()["overdue"] is False
        cleared = await alice.recv(5)
        assert (cleared["reason"], cleared["task"]["overdue"]) == (None, False)
        again = await alice.recv(10)
        assert (again["reason"], again["task"]["overdue"]) == ("overdue", True)
    async with live.producer() as p:
        assert (await p.get("/api/v1/tasks/t2")).json()["overdue"] is False


async def test_a_postponed_task_past_its_due_time_is_flagged_without_an_event(
    live: Live,
) -> None:
    async with live.producer() as p:
        body = task_body("t1", due_at=soon(0.5), postponed_until=soon(3600))
        assert (await p.post("/api/v1/tasks", json=body)).status_code == 201
        for _ in range(50):
            if (await p.get("/api/v1/tasks/t1")).json()["overdue"]:
                break
            await asyncio.sleep(0.1)
        task = (await p.get("/api/v1/tasks/t1")).json()
    assert (task["status"], task["overdue"]) == ("postponed", True)
    # seq 1 is the create's (it moved the postponed count); the flag added none
    assert (await live.parts.reads.counter("default/user:alice")).seq == 1


async def test_the_next_step_names_the_step_it_follows(live: Live) -> None:
    proc = {"instance_id": "p-9", "name": "Onboarding"}
    async with live.producer() as p:
        started = await p.post(
            "/api/v1/processes", json={"id": "p-9", "name": "Onboarding", "expect_more": True}
        )
        assert started.status_code == 201
        assert (
            await p.post("/api/v1/tasks", json=task_body("s1", process=proc))
        ).status_code == 201
    async with FeedClient(live.ws_url, token("alice")) as alice:
        await alice.connect()
        async with live.person("alice") as me:
            assert (await me.post("/api/v1/tasks/s1/complete")).status_code == 200
        async with live.producer() as p:
            nxt = task_body("s2", follows="s1", process=proc)
            assert (await p.post("/api/v1/tasks", json=nxt)).status_code == 201
            bad = await p.post("/api/v1/tasks", json=task_body("s3", follows="a b"))
            assert_error(bad, 422)
        removed, added = await alice.recv(), await alice.recv()
    assert removed["type"] == "task.removed"
    assert (added["type"], added["task"]["follows"]) == ("task.added", "s1")
