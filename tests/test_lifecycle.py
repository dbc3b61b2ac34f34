"""Process lifecycle: postponed tasks come back, instances end and are measured,
disabled processes, statistics and the open-the-right-page redirect."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from server.changes import FeedPos
from tests.support.app import PRODUCER_KEY, Live, key, make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.server_proc import ServerProcess
from tests.support.services import PostgresServer
from tests.support.tasks import assert_error, task_body
from tests.test_scaleout import server_env


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def step(tid: str, owner: str, instance: str, name: str = "Onboarding") -> dict[str, Any]:
    return task_body(tid, owner, process={"instance_id": instance, "name": name})


async def test_postponed_task_comes_back_by_itself_at_its_time(live: Live) -> None:
    async with FeedClient(live.ws_url, token("alice")) as feed:
        await feed.connect()
        async with live.producer() as p:
            await p.post("/api/v1/tasks", json=task_body("t0"))
            due = datetime.now(UTC) + timedelta(seconds=1)
            resp = await p.post("/api/v1/tasks/t0/postpone", json={"until": due.isoformat()})
            assert resp.status_code == 200
        await feed.until_seq(2)
        assert feed.count == 0
        await feed.until_seq(3, timeout=10)
        back_at = datetime.now(UTC)
    event = feed.events[-1]
    assert (event["type"], event["reason"], event["count"]) == ("task.added", "resumed", 1)
    assert event["task"]["status"] == "running" and event["task"]["postponed_until"] is None
    assert back_at >= due, "not back before its time"


async def test_resume_early_by_owner_and_by_producer(embedded: Live) -> None:
    async with embedded.producer() as p, embedded.person("alice") as me:
        for tid in ("a", "b"):
            await p.post("/api/v1/tasks", json=task_body(tid))
            await p.post(f"/api/v1/tasks/{tid}/postpone", json={"until": soon(3600)})
        assert (await me.post("/api/v1/tasks/a/resume")).json()["status"] == "running"
        assert (await p.post("/api/v1/tasks/b/resume")).json()["status"] == "running"
        assert (await me.get("/api/v1/me/counter")).json()["count"] == 2


async def test_rescheduling_a_postponed_task_is_an_update(embedded: Live) -> None:
    async with embedded.producer() as p:
        await p.post("/api/v1/tasks", json=task_body("t0"))
        await p.post("/api/v1/tasks/t0/postpone", json={"until": soon(3600)})
        later = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
        moved = await p.patch("/api/v1/tasks/t0", json={"postponed_until": later.isoformat()})
        again = await p.post("/api/v1/tasks/t0/postpone", json={"until": soon(7200)})
    assert moved.status_code == 200
    assert moved.json()["postponed_until"].startswith(later.strftime("%Y-%m-%dT%H:%M:%S"))
    assert again.json()["status"] == "postponed"
    assert await embedded.parts.reads.counter(key("alice")) == FeedPos(seq=2, count=0, postponed=1)


async def test_a_return_due_while_the_server_was_down_fires_at_start(tmp_path: Any) -> None:
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/timers.db",
        "TASKBELL_SECRET": "s" * 40,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
    }
    server = ServerProcess(env)
    await asyncio.to_thread(server.start)
    headers = {"Authorization": f"Bearer {PRODUCER_KEY}"}
    try:
        async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as p:
            await p.post("/api/v1/tasks", json=task_body("t0"))
            due = datetime.now(UTC) + timedelta(seconds=1)
            await p.post("/api/v1/tasks/t0/postpone", json={"until": due.isoformat()})
            await asyncio.to_thread(server.stop)
            with sqlite3.connect(tmp_path / "timers.db") as db:
                (while_down,) = db.execute("SELECT status FROM task WHERE id = 't0'").fetchone()
            # Start again only once the return is due, however long the stop took.
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.1)
            await asyncio.to_thread(server.start)
            status = None
            for _ in range(200):
                status = (await p.get("/api/v1/tasks/t0")).json()["status"]
                if status == "running":
                    break
                await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(server.stop)
    assert while_down == "postponed", "the return must be left for the next start"
    assert status == "running"


@pytest.mark.slow
async def test_two_instances_fire_200_simultaneous_returns_exactly_once(
    postgres_server: PostgresServer, redis_server: Any
) -> None:
    name = f"timers_{random.randrange(16**8):08x}"
    env = server_env(postgres_server.create_database(name), redis_server.url)
    env["TASKBELL_TIMER_SECONDS"] = "0.05"
    owners = [f"u{i}" for i in range(10)]
    with ServerProcess(env) as a, ServerProcess(env) as b:
        a.wait_ready()
        b.wait_ready()
        headers = {"Authorization": f"Bearer {PRODUCER_KEY}"}
        async with httpx.AsyncClient(base_url=a.base_url, headers=headers) as p:
            ops: list[dict[str, Any]] = [
                {"op": "create", "task": task_body(f"t{i}", owners[i % 10])} for i in range(200)
            ]
            assert (await p.post("/api/v1/tasks/batch", json={"ops": ops})).status_code == 200
            due = soon(1.5)
            ops = [{"op": "postpone", "id": f"t{i}", "until": due} for i in range(200)]
            resp = await p.post("/api/v1/tasks/batch", json={"ops": ops})
            assert {r["status"] for r in resp.json()["results"]} == {200}
        dsn = postgres_server.dsn_for(name)
        conn = await asyncpg.connect(dsn)
        try:
            for _ in range(200):
                running = await conn.fetchval("SELECT count(*) FROM task WHERE status='running'")
                if running == 200:
                    break
                await asyncio.sleep(0.1)
            # Stop both instances: a timer tick in progress finishes (or is rolled back)
            # first, so a double fire, had there been one, is in the database now.
            await asyncio.gather(asyncio.to_thread(a.stop), asyncio.to_thread(b.stop))
            per_task = await conn.fetch(
                "SELECT task_id, count(*) AS n FROM feed_event WHERE type = 'task.added'"
                " GROUP BY task_id"
            )
            feeds = await conn.fetch("SELECT substr(feed, 6) AS owner, seq, count FROM feed")
            truth = await conn.fetch(
                "SELECT owner, count(*) AS n FROM task WHERE status='running' GROUP BY owner"
            )
        finally:
            await conn.close()
    assert running == 200
    # each task: added once at creation, once when it came back
    assert sorted({r["n"] for r in per_task}) == [2] and len(per_task) == 200
    assert {r["owner"]: r["count"] for r in feeds} == {r["owner"]: r["n"] for r in truth}
    assert all(r["seq"] == 60 for r in feeds)  # 20 tasks each: added, removed, added


async def test_instance_completes_by_itself_when_its_last_step_completes(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=step("s1", "alice", "p-9"))
        await p.post("/api/v1/tasks", json=step("s2", "bob", "p-9"))
        await p.post("/api/v1/tasks/s1/complete")
        running = (await p.get("/api/v1/processes/p-9")).json()
        await asyncio.sleep(0.02)
        await p.post("/api/v1/tasks/s2/complete")
        done = (await p.get("/api/v1/processes/p-9")).json()
        late = await p.post("/api/v1/tasks", json=step("s3", "alice", "p-9"))
    assert running["status"] == "running" and running["ended_at"] is None
    assert done["status"] == "completed" and done["duration_ms"] >= 20
    assert [(s["id"], s["owner"], s["status"]) for s in done["steps"]] == [
        ("s1", "alice", "completed"),
        ("s2", "bob", "completed"),
    ]
    assert_error(late, 409, "process_ended")


async def test_expect_more_keeps_an_instance_open_until_the_end_event(live: Live) -> None:
    async with live.producer() as p:
        created = await p.post(
            "/api/v1/processes", json={"id": "p-5", "name": "Hiring", "expect_more": True}
        )
        repeat = await p.post(
            "/api/v1/processes", json={"id": "p-5", "name": "Hiring", "expect_more": True}
        )
        await p.post("/api/v1/tasks", json=step("s1", "alice", "p-5", "Hiring"))
        await p.post("/api/v1/tasks/s1/complete")
        still = (await p.get("/api/v1/processes/p-5")).json()["status"]
        await p.post("/api/v1/tasks", json=step("s2", "alice", "p-5", "Hiring"))
        ended = await p.post("/api/v1/processes/p-5/complete")
        again = await p.post("/api/v1/processes/p-5/complete")
        other = await p.post("/api/v1/processes/p-5/cancel")
        s2 = (await p.get("/api/v1/tasks/s2")).json()["status"]
    assert (created.status_code, repeat.status_code) == (201, 200)
    assert still == "running"
    assert ended.status_code == 200 and ended.json()["status"] == "completed"
    assert ended.json()["canceled_steps"] == 1 and s2 == "canceled"
    assert again.status_code == 200
    assert_error(other, 409, "process_ended")


async def test_canceled_instance_updates_three_owners_live(live: Live) -> None:
    owners = ["alice", "bob", "carol"]
    feeds = [FeedClient(live.ws_url, token(o)) for o in owners]
    for feed in feeds:
        await feed.connect()
    async with live.producer() as p:
        for i, owner in enumerate(owners):
            await p.post("/api/v1/tasks", json=step(f"s{i}", owner, "p-7"))
        resp = await p.post("/api/v1/processes/p-7/cancel")
        inst = (await p.get("/api/v1/processes/p-7")).json()
    assert resp.json()["canceled_steps"] == 3 and inst["status"] == "canceled"
    for feed in feeds:
        await feed.until_seq(2)
        await feed.close()
        assert feed.events[-1]["type"] == "task.removed"
        assert feed.events[-1]["reason"] == "canceled" and feed.count == 0


async def test_disabled_process_refuses_new_work_and_running_ones_carry_on(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=step("s1", "alice", "p-1", "Payroll"))
        off = await p.post("/api/v1/process-definitions/Payroll/disable")
        new_task = await p.post("/api/v1/tasks", json=step("s2", "alice", "p-2", "Payroll"))
        new_instance = await p.post("/api/v1/processes", json={"id": "p-3", "name": "Payroll"})
        listed = (await p.get("/api/v1/process-definitions")).json()["processes"]
        carry_on = await p.post("/api/v1/tasks/s1/complete")
        await p.post("/api/v1/process-definitions/Payroll/enable")
        after = await p.post("/api/v1/tasks", json=step("s3", "alice", "p-4", "Payroll"))
    assert off.json() == {"name": "Payroll", "disabled": True}
    assert_error(new_task, 409, "process_disabled")
    assert "disabled" in new_task.json()["error"]["message"]
    assert_error(new_instance, 409, "process_disabled")
    assert {"name": "Payroll", "disabled": True} in listed
    assert carry_on.status_code == 200
    assert after.status_code == 201


async def test_statistics_count_by_status_and_time_only_completed(live: Live) -> None:
    async with live.producer() as p:
        for i in range(4):
            await p.post("/api/v1/tasks", json=step(f"c{i}", "alice", f"pc{i}", "Invoice"))
            await asyncio.sleep(0.01 * (i + 1))
            await p.post(f"/api/v1/tasks/c{i}/complete")
        await p.post("/api/v1/tasks", json=step("x", "alice", "px", "Invoice"))
        await p.post("/api/v1/processes/px/cancel")
        await p.post("/api/v1/tasks", json=step("r", "alice", "pr", "Invoice"))
        await p.post("/api/v1/tasks", json=step("o", "alice", "po", "Other"))
        await p.post("/api/v1/processes/po/fail")
        stats = (await p.get("/api/v1/processes/stats")).json()["processes"]
        durations = [await duration_of(p, f"pc{i}") for i in range(4)]
        future = (await p.get("/api/v1/processes/stats", params={"from": soon(60)})).json()
        bad = await p.get("/api/v1/processes/stats", params={"from": "yesterday"})
        naive = await p.get("/api/v1/processes/stats", params={"from": "2026-01-01T00:00:00"})
    by_name = {s["name"]: s for s in stats}
    inv = by_name["Invoice"]
    assert inv["counts"] == {"running": 1, "completed": 4, "canceled": 1, "error": 0}
    # 4 values: nearest rank puts p50 at the 2nd, p95 at the 4th
    values = sorted(durations)
    assert inv["duration_ms"] == {
        "completed": 4,
        "mean": round(sum(values) / 4),
        "p50": values[1],
        "p95": values[3],
        "max": values[3],
    }
    assert values[3] >= 40, "the longest one waited 40 ms between its start and its end"
    assert by_name["Other"]["counts"]["error"] == 1
    assert by_name["Other"]["duration_ms"]["completed"] == 0
    assert future["processes"] == []
    assert_error(bad, 400, "bad_query")
    assert_error(naive, 400, "bad_query")


async def duration_of(p: httpx.AsyncClient, instance_id: str) -> int:
    got = (await p.get(f"/api/v1/processes/{instance_id}")).json()
    assert got["status"] == "completed", got
    value: int = got["duration_ms"]
    return value


async def started_at(p: httpx.AsyncClient, instance_id: str) -> str:
    value: str = (await p.get(f"/api/v1/processes/{instance_id}")).json()["started_at"]
    return value


async def test_statistics_percentiles_are_nearest_rank_of_completed_durations(
    live: Live,
) -> None:
    n = 20
    async with live.producer() as p:
        # Started one after another and completed in reverse order: every instance
        # started later ends sooner, so the 20 durations all differ.
        for i in range(n):
            await p.post("/api/v1/tasks", json=step(f"s{i}", "alice", f"q{i}", "Payroll"))
            await asyncio.sleep(0.003)
        for i in reversed(range(n)):
            await p.post(f"/api/v1/tasks/s{i}/complete")
            await asyncio.sleep(0.003)
        durations = [await duration_of(p, f"q{i}") for i in range(n)]
        stats = (await p.get("/api/v1/processes/stats", params={"name": "Payroll"})).json()
    values = sorted(durations)
    assert len(set(values)) == n and values == durations[::-1]
    assert stats["processes"] == [
        {
            "name": "Payroll",
            "counts": {"running": 0, "completed": n, "canceled": 0, "error": 0},
            "duration_ms": {
                "completed": n,
                "mean": round(sum(values) / n),
                "p50": values[9],  # rank ceil(0.50 * 20) = 10
                "p95": values[18],  # rank ceil(0.95 * 20) = 19, not the max
                "max": values[19],
            },
        }
    ]


async def test_statistics_from_and_to_narrow_by_start_time(live: Live) -> None:
    async with live.producer() as p:
        # started in this order: early e0 e1, middle m0 m1, late l0 l1
        for iid in ("e0", "e1", "m0", "m1", "l0", "l1"):
            await p.post("/api/v1/tasks", json=step(f"s-{iid}", "alice", iid, "Audit"))
            await asyncio.sleep(0.003)
        await p.post("/api/v1/processes/e1/cancel")
        await p.post("/api/v1/processes/m0/fail")
        await p.post("/api/v1/tasks/s-l1/complete")
        middle_from = await started_at(p, "m0")
        late_from = await started_at(p, "l0")

        async def counts(**params: str) -> dict[str, int]:
            got = (await p.get("/api/v1/processes/stats", params=params)).json()["processes"]
            assert [s["name"] for s in got] == ["Audit"], got
            result: dict[str, int] = got[0]["counts"]
            return result

        everything = await counts()
        from_middle = await counts(**{"from": middle_from})
        to_late = await counts(to=late_from)
        only_middle = await counts(**{"from": middle_from, "to": late_from})
        empty = (
            await p.get("/api/v1/processes/stats", params={"from": late_from, "to": middle_from})
        ).json()
    # from is inclusive and to exclusive: [from, to) on the start time
    assert everything == {"running": 3, "completed": 1, "canceled": 1, "error": 1}
    assert from_middle == {"running": 2, "completed": 1, "canceled": 0, "error": 1}
    assert to_late == {"running": 2, "completed": 0, "canceled": 1, "error": 1}
    assert only_middle == {"running": 1, "completed": 0, "canceled": 0, "error": 1}
    assert empty["processes"] == []


async def test_open_redirects_to_the_task_page_then_to_the_record(live: Live) -> None:
    async with live.producer() as p:
        await p.post("/api/v1/tasks", json=task_body("t0"))
        await p.post("/api/v1/tasks", json=task_body("t1", record=None))
    async with httpx.AsyncClient(base_url=live.base_url) as c:
        open_ = await c.get("/api/v1/tasks/t0/open", params={"token": token("alice")})
        stranger = await c.get("/api/v1/tasks/t0/open", params={"token": token("mallory")})
        nobody = await c.get("/api/v1/tasks/t0/open")
        async with live.person("alice") as me:
            await me.post("/api/v1/tasks/t0/complete")
            await me.post("/api/v1/tasks/t1/cancel")
            done = await me.get("/api/v1/tasks/t0/open")
            plain = await me.get("/api/v1/tasks/t1/open")
    assert open_.status_code == 303
    assert open_.headers["location"] == "https://crm.example/pages/approve?task=t0"
    assert_error(stranger, 404, "task_not_found")
    assert_error(nobody, 401)
    assert done.headers["location"] == "/#/records/Account/acc-1"
    assert plain.headers["location"] == "/#/activities"


async def test_process_endpoints_refuse_bad_input(embedded: Live) -> None:
    async with embedded.producer() as p:
        assert_error(await p.post("/api/v1/processes", json={"id": "x"}), 422)
        assert_error(await p.post("/api/v1/processes", content=b"{"), 400)
        assert_error(await p.get("/api/v1/processes/nope"), 404, "process_not_found")
        assert_error(await p.post("/api/v1/processes/nope/complete"), 404)
        assert_error(await p.patch("/api/v1/processes/nope", json={"expect_more": False}), 404)
        assert_error(await p.patch("/api/v1/processes/x", json={"expect_more": "maybe"}), 422)
        await p.post("/api/v1/processes", json={"id": "p-1", "name": "A"})
        clash = await p.post("/api/v1/processes", json={"id": "p-1", "name": "B"})
        assert_error(clash, 409, "instance_id_conflict")
    async with embedded.person("alice") as me:
        # A valid token without the process-admin role (tests/test_process_admin.py).
        assert_error(await me.get("/api/v1/processes/stats"), 403, "process_admin_required")
        assert_error(
            await me.post("/api/v1/process-definitions/A/disable"), 403, "process_admin_required"
        )


async def test_timers_survive_a_burst_of_postponements(sqlite_url: str) -> None:
    async with serve(make_settings(sqlite_url, timer_interval_s=0.05)) as live:
        async with live.producer() as p:
            ops: list[dict[str, Any]] = [
                {"op": "create", "task": task_body(f"t{i}")} for i in range(50)
            ]
            await p.post("/api/v1/tasks/batch", json={"ops": ops})
            ops = [{"op": "postpone", "id": f"t{i}", "until": soon(0.5)} for i in range(50)]
            await p.post("/api/v1/tasks/batch", json={"ops": ops})
        async with FeedClient(live.ws_url, token("alice")) as feed:
            await feed.connect()
            await feed.until_seq(150, timeout=10)
        assert feed.count == 50 == await live.parts.reads.running_count("default", "user:alice")
