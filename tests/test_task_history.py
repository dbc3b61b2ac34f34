"""A task's history: every change, with who made it and in which capacity."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.support.app import Live
from tests.support.tasks import assert_error, task_body


async def test_history_names_who_changed_a_task_and_as_what(live: Live) -> None:
    now = datetime.now(UTC)
    async with live.producer() as p:
        await p.put("/api/v1/roles/desk/members", json={"members": ["ann", "ben"]})
        body = {
            **task_body("t1"),
            "owner": None,
            "role": "desk",
            "actions": [{"id": "ok", "label": "OK"}],
        }
        assert (await p.post("/api/v1/tasks", json=body)).status_code == 201
        assert (await p.patch("/api/v1/tasks/t1", json={"title": "Check it"})).status_code == 200
        sub = {
            "id": "s1",
            "user": "ann",
            "substitute": "cat",
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(hours=1)).isoformat(),
        }
        assert (await p.post("/api/v1/substitutions", json=sub)).status_code == 201
    async with live.person("ben") as ben:
        until = (now + timedelta(hours=2)).isoformat()
        assert (
            await ben.post("/api/v1/tasks/t1/postpone", json={"until": until})
        ).status_code == 200
        assert (await ben.post("/api/v1/tasks/t1/resume")).status_code == 200
    async with live.person("ann") as ann:
        assert (await ann.post("/api/v1/tasks/t1/claim")).status_code == 200
    async with live.person("cat") as cat:
        done = await cat.post(
            "/api/v1/tasks/t1/complete", json={"outcome": "ok", "comment": "fine"}
        )
        assert done.status_code == 200, done.text
    async with live.producer() as p:
        got = await p.get("/api/v1/tasks/t1/history")
    assert got.status_code == 200
    changes = got.json()["changes"]
    assert [(c["op"], c["actor"], c["acting_as"], c["status"], c["owner"]) for c in changes] == [
        ("create", None, "producer", "running", None),
        ("update", None, "producer", "running", None),
        ("postpone", "ben", "member", "postponed", None),
        ("resume", "ben", "member", "running", None),
        ("claim", "ann", "claimer", "running", "ann"),
        ("complete", "cat", "substitute", "completed", "ann"),
    ]
    assert changes[1]["detail"] == {"fields": ["title"]}
    assert changes[2]["detail"]["until"].startswith(until[:16].replace("+00:00", ""))
    assert changes[5]["detail"] == {"outcome": "ok", "comment": "fine"}
    assert all(c["role"] == "desk" and c["at"] for c in changes)


async def test_a_person_sees_the_history_of_tasks_they_can_see_only(live: Live) -> None:
    async with live.producer() as p:
        assert (await p.post("/api/v1/tasks", json=task_body("t1", "alice"))).status_code == 201
    async with live.person("alice") as alice:
        mine = await alice.get("/api/v1/tasks/t1/history")
    async with live.person("bob") as bob:
        theirs = await bob.get("/api/v1/tasks/t1/history")
        missing = await bob.get("/api/v1/tasks/nope/history")
    assert mine.status_code == 200 and len(mine.json()["changes"]) == 1
    assert_error(theirs, 404, "task_not_found")
    assert theirs.json() == {
        **missing.json(),
        "error": {**missing.json()["error"], "message": theirs.json()["error"]["message"]},
    }


async def test_the_clock_is_named_for_what_it_does(live: Live) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
    async with live.producer() as p:
        body = task_body("t1", postponed_until=soon, due_at=soon)
        assert (await p.post("/api/v1/tasks", json=body)).status_code == 201
        for _ in range(50):
            changes = (await p.get("/api/v1/tasks/t1/history")).json()["changes"]
            if len(changes) >= 3:
                break
            await asyncio.sleep(0.1)
    assert sorted((c["op"], c["acting_as"]) for c in changes[1:]) == [
        ("overdue", "clock"),
        ("resume", "clock"),
    ]
