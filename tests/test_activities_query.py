"""The activities list over the API, on SQLite and PostgreSQL: search (title, process,
record), sort (newest, due, priority) with paging that shows every task once, the
per-status totals behind the filters, and bad query values refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.settings import Settings
from tests.support.app import Live, serve
from tests.support.audiences import ACME, person, producer, two_tenants
from tests.support.tasks import assert_error, task_body

TASKS = "/api/v1/me/tasks"
LATER = "2099-01-01T00:00:00Z"


async def seed(live: Live) -> None:
    """alice: five tasks of two processes and three records, of every status."""
    bodies = [
        task_body("t1", title="Approve invoice INV-7", priority="low", due_at="2031-01-03T09:00Z"),
        task_body("t2", title="Call Acme back", priority="urgent"),
        task_body(
            "t3",
            title="Check 100% of lines",
            process={"instance_id": "p-x", "name": "Contract review"},
            record={"entity": "Contract", "id": "c_9", "title": "Globex frame"},
            priority="high",
            due_at="2031-01-01T09:00Z",
        ),
        task_body("t4", title="Send the reminder", due_at="2031-01-02T09:00Z"),
        task_body("t5", title="Archive", record=None),
    ]
    async with live.producer() as p:
        for b in bodies:
            assert (await p.post("/api/v1/tasks", json=b)).status_code == 201
        assert (await p.post("/api/v1/tasks/t4/complete")).is_success
        assert (await p.post("/api/v1/tasks/t5/cancel")).is_success
        assert (await p.post("/api/v1/tasks/t1/postpone", json={"until": LATER})).is_success


async def ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
    r = await client.get(TASKS, params={"status": "all", **params})
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()["tasks"]]


async def test_search_finds_title_process_and_record_whatever_the_case(live: Live) -> None:
    await seed(live)
    async with live.person("alice") as alice:
        assert await ids(alice, q="invoice inv") == ["t1"]  # title, any case
        assert sorted(await ids(alice, q="CONTRACT REV")) == ["t3"]  # process name
        assert await ids(alice, q="globex") == ["t3"]  # record title
        assert sorted(await ids(alice, q="acme")) == ["t1", "t2", "t4"]  # record and title
        assert await ids(alice, q="100%") == ["t3"]  # % is a character, not a wildcard
        assert await ids(alice, q="c_9") == ["t3"]
        assert await ids(alice, q="c_") == ["t3"]  # _ too
        assert await ids(alice, q="nothing like it") == []
        assert await ids(alice, q="acme", status="running") == ["t2"]


async def test_sorts_order_by_due_and_by_priority(live: Live) -> None:
    await seed(live)
    async with live.person("alice") as alice:
        newest = await ids(alice)
        assert newest[0] == "t1"  # postponed last of all
        undated = [i for i in newest if i in ("t2", "t5")]  # no due time: last, newest first
        assert await ids(alice, sort="due") == ["t3", "t4", "t1", *undated]
        assert (await ids(alice, sort="priority"))[:2] == ["t2", "t3"]  # urgent, high
        assert (await ids(alice, sort="priority"))[-1] == "t1"  # low


@pytest.mark.parametrize("sort", ["newest", "due", "priority"])
async def test_paging_shows_every_task_once_in_the_same_order(live: Live, sort: str) -> None:
    await seed(live)
    async with live.person("alice") as alice:
        whole = await ids(alice, sort=sort)
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(10):
            params: dict[str, Any] = {"status": "all", "sort": sort, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            body = (await alice.get(TASKS, params=params)).json()
            seen += [t["id"] for t in body["tasks"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
    assert seen == whole and len(whole) == 5


async def test_counts_follow_the_search(live: Live) -> None:
    await seed(live)
    async with live.person("alice") as alice:
        everything = (await alice.get("/api/v1/me/counts")).json()
        acme = (await alice.get("/api/v1/me/counts", params={"q": "acme"})).json()
    assert everything == {"running": 2, "postponed": 1, "completed": 1, "canceled": 1}
    assert acme == {"running": 1, "postponed": 1, "completed": 1, "canceled": 0}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"sort": "oldest"}, "bad_query"),
        ({"sort": "DUE"}, "bad_query"),
        ({"q": "x" * 201}, "bad_query"),
        ({"q": "a\x00b"}, "bad_query"),
        ({"q": "tab\there"}, "bad_query"),
        ({"sort": "due", "cursor": "garbage!"}, "bad_cursor"),
        ({"sort": "due", "cursor": "cHJpb3JpdHlAMg=="}, "bad_cursor"),  # priority@2
        ({"sort": "due", "cursor": "ZHVlQC0x"}, "bad_cursor"),  # due@-1
        ({"cursor": "ZHVlQDI="}, "bad_cursor"),  # due@2 given to newest
    ],
)
async def test_bad_query_values_are_refused(
    embedded: Live, params: dict[str, str], code: str
) -> None:
    async with embedded.person("alice") as alice:
        assert_error(await alice.get(TASKS, params=params), 400, code)
        if "q" in params:
            assert_error(await alice.get("/api/v1/me/counts", params=params), 400, code)


async def test_a_search_needs_a_person(embedded: Live) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url) as anon:
        assert_error(await anon.get(TASKS, params={"q": "acme"}), 401)
        assert_error(await anon.get("/api/v1/me/counts", params={"q": "acme"}), 401)


@pytest.fixture
async def tenants(backend: Settings) -> AsyncIterator[Live]:
    async with serve(two_tenants(backend)) as running:
        yield running


async def test_a_search_never_finds_another_tenants_tasks(tenants: Live) -> None:
    async with producer(tenants, ACME) as q:
        assert (await q.post("/api/v1/tasks", json=task_body("t9", "alice"))).is_success
    async with person(tenants, "alice") as alice:
        assert await ids(alice, q="approve") == []
        counts = (await alice.get("/api/v1/me/counts", params={"q": "approve"})).json()
        assert set(counts.values()) == {0}
    async with person(tenants, "alice", ACME) as theirs:
        assert await ids(theirs, q="approve") == ["t9"]
