"""People's HTTP API: my tasks, my counter, my record's tasks, acting on my own tasks,
and never seeing anyone else's."""

from __future__ import annotations

import httpx

from tests.support.app import Live
from tests.support.tasks import assert_error, task_body


async def seed(live: Live) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("a1", "alice"))
        await c.post("/api/v1/tasks", json=task_body("a2", "alice"))
        await c.post("/api/v1/tasks", json=task_body("a3", "alice", record=None))
        await c.post("/api/v1/tasks", json=task_body("b1", "bob"))


async def test_my_tasks_lists_only_my_running_tasks_newest_first(live: Live) -> None:
    await seed(live)
    async with live.person("alice") as c:
        resp = await c.get("/api/v1/me/tasks", params={"status": "running"})
    assert resp.status_code == 200
    assert [t["id"] for t in resp.json()["tasks"]] == ["a3", "a2", "a1"]


async def test_my_counter_matches_running_tasks(live: Live) -> None:
    await seed(live)
    async with live.person("alice") as c:
        counts = {"running": 3, "postponed": 0}
        own = {"user:alice": {"count": 3, "seq": 3, "counts": counts}}
        assert (await c.get("/api/v1/me/counter")).json() == {
            "count": 3,
            "counts": counts,
            "seq": 3,
            "total": 3,
            "feeds": own,
        }
        await c.post("/api/v1/tasks/a1/complete")
        body = (await c.get("/api/v1/me/counter")).json()
        assert (body["count"], body["seq"], body["total"]) == (2, 4, 2)
    async with live.person("nobody") as c:
        body = (await c.get("/api/v1/me/counter")).json()
        assert (body["count"], body["seq"], body["total"]) == (0, 0, 0)


async def test_owner_can_complete_postpone_and_resume_own_task(live: Live) -> None:
    await seed(live)
    async with live.person("alice") as c:
        done = await c.post("/api/v1/tasks/a1/complete")
        later = await c.post("/api/v1/tasks/a2/postpone", json={"until": "2099-05-01T09:00:00Z"})
        listed = await c.get("/api/v1/me/tasks", params={"status": "postponed"})
        back = await c.post("/api/v1/tasks/a2/resume")
    assert done.json()["status"] == "completed"
    assert later.json()["status"] == "postponed"
    assert [t["id"] for t in listed.json()["tasks"]] == ["a2"]
    assert back.json()["status"] == "running" and back.json()["postponed_until"] is None


async def test_another_owners_task_is_404_never_403(live: Live) -> None:
    await seed(live)
    async with live.person("alice") as c:
        for verb in ("complete", "cancel", "resume"):
            assert_error(await c.post(f"/api/v1/tasks/b1/{verb}"), 404, "task_not_found")
        postpone = await c.post("/api/v1/tasks/b1/postpone", json={"until": "2099-01-01T00:00Z"})
        assert_error(postpone, 404, "task_not_found")
        # and the same answer for a task that does not exist at all
        assert_error(await c.post("/api/v1/tasks/zzz/complete"), 404, "task_not_found")
    async with live.producer() as c:
        assert (await c.get("/api/v1/tasks/b1")).json()["status"] == "running"


async def test_a_person_cannot_read_or_patch_through_producer_calls(live: Live) -> None:
    await seed(live)
    async with live.person("alice") as c:
        assert_error(await c.get("/api/v1/tasks/a1"), 401)
        assert_error(await c.patch("/api/v1/tasks/a1", json={"owner": "alice2"}), 401)


async def test_record_tasks_lists_my_open_tasks_of_that_record(live: Live) -> None:
    await seed(live)
    async with live.person("alice") as c:
        await c.post("/api/v1/tasks/a1/postpone", json={"until": "2099-01-01T00:00:00Z"})
        resp = await c.get("/api/v1/records/Account/acc-1/tasks")
        other = await c.get("/api/v1/records/Account/acc-2/tasks")
    assert resp.status_code == 200
    assert sorted(t["id"] for t in resp.json()["tasks"]) == ["a1", "a2"]
    assert other.json()["tasks"] == []


async def test_history_filters_and_cursor_pagination(live: Live) -> None:
    async with live.producer() as c:
        for i in range(7):
            await c.post("/api/v1/tasks", json=task_body(f"h{i}", "dana"))
        await c.post("/api/v1/tasks/h0/complete")
        await c.post("/api/v1/tasks/h1/cancel")
    seen: list[str] = []
    async with live.person("dana") as c:
        cursor = None
        for _ in range(10):
            params = {"status": "all", "limit": "3"}
            if cursor:
                params["cursor"] = cursor
            page = (await c.get("/api/v1/me/tasks", params=params)).json()
            seen += [t["id"] for t in page["tasks"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        finals = await c.get("/api/v1/me/tasks", params={"status": "completed,canceled"})
    assert sorted(seen) == [f"h{i}" for i in range(7)]
    assert len(seen) == len(set(seen))
    assert sorted(t["id"] for t in finals.json()["tasks"]) == ["h0", "h1"]


async def test_bad_queries_are_400(embedded: Live) -> None:
    async with embedded.person("alice") as c:
        assert_error(await c.get("/api/v1/me/tasks?status=nope"), 400, "bad_query")
        assert_error(await c.get("/api/v1/me/tasks?limit=0"), 400, "bad_query")
        assert_error(await c.get("/api/v1/me/tasks?limit=abc"), 400, "bad_query")
        assert_error(await c.get("/api/v1/me/tasks?cursor=%%%"), 400, "bad_cursor")


async def test_people_endpoints_need_a_valid_token(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        for path in ("/api/v1/me/tasks", "/api/v1/me/counter", "/api/v1/records/A/b/tasks"):
            assert_error(await c.get(path), 401, "missing_credentials")
            bad = await c.get(path, headers={"Authorization": "Bearer not.a.jwt"})
            assert_error(bad, 401, "invalid_token")


async def test_my_counts_gives_a_total_per_status(live: Live) -> None:
    await seed(live)
    async with live.person("alice") as c:
        await c.post("/api/v1/tasks/a1/complete")
        await c.post("/api/v1/tasks/a2/postpone", json={"until": "2099-01-01T00:00:00Z"})
        counts = (await c.get("/api/v1/me/counts")).json()
    assert counts == {"running": 1, "postponed": 1, "completed": 1, "canceled": 0}
    async with live.person("nobody") as c:
        assert set((await c.get("/api/v1/me/counts")).json().values()) == {0}
    async with httpx.AsyncClient(base_url=live.base_url) as anonymous:
        assert_error(await anonymous.get("/api/v1/me/counts"), 401)
