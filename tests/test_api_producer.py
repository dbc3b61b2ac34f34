"""Producer HTTP API: create (idempotent), read, patch, reassign, transitions, batch,
process cancel; and bad input of every kind."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.changes import FeedPos
from tests.support.app import Live, key, token
from tests.support.tasks import assert_error, task_body


async def test_create_answers_201_then_200_on_identical_repeat(live: Live) -> None:
    async with live.producer() as c:
        first = await c.post("/api/v1/tasks", json=task_body())
        again = await c.post("/api/v1/tasks", json=task_body())
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["status"] == "running"
    pos = await live.parts.reads.counter(key("alice"))
    assert (pos.count, pos.seq) == (1, 1), "an idempotent repeat must not take a new seq"


async def test_create_with_same_id_and_other_body_is_409(live: Live) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        resp = await c.post("/api/v1/tasks", json=task_body(title="Something else"))
    assert_error(resp, 409, "task_id_conflict")


async def test_get_task_returns_it_and_404_for_unknown(live: Live) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        got = await c.get("/api/v1/tasks/t-1")
        missing = await c.get("/api/v1/tasks/nope")
    assert got.status_code == 200 and got.json()["id"] == "t-1"
    assert_error(missing, 404, "task_not_found")


async def test_patch_changes_title_url_and_record(live: Live) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        resp = await c.patch(
            "/api/v1/tasks/t-1",
            json={"title": "New", "url": "https://x/y", "record": None},
        )
    assert resp.status_code == 200
    body = resp.json()
    assert (body["title"], body["url"], body["record"]) == ("New", "https://x/y", None)
    assert await live.parts.reads.counter(key("alice")) == FeedPos(seq=2, count=1)


async def test_reassignment_moves_task_between_feeds_each_with_its_own_seq(live: Live) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        resp = await c.patch("/api/v1/tasks/t-1", json={"owner": "bob"})
    assert resp.status_code == 200 and resp.json()["owner"] == "bob"
    assert await live.parts.reads.counter(key("alice")) == FeedPos(seq=2, count=0)
    assert await live.parts.reads.counter(key("bob")) == FeedPos(seq=1, count=1)
    async with live.person("alice") as a, live.person("bob") as b:
        assert (await a.get("/api/v1/me/tasks")).json()["tasks"] == []
        assert [t["id"] for t in (await b.get("/api/v1/me/tasks")).json()["tasks"]] == ["t-1"]


@pytest.mark.parametrize(
    ("first", "second", "status"),
    [
        ("complete", "cancel", 409),
        ("cancel", "complete", 409),
        ("complete", "complete", 200),
        ("cancel", "cancel", 200),
    ],
)
async def test_final_transitions(live: Live, first: str, second: str, status: int) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        assert (await c.post(f"/api/v1/tasks/t-1/{first}")).status_code == 200
        resp = await c.post(f"/api/v1/tasks/t-1/{second}")
    assert resp.status_code == status, resp.text
    if status == 409:
        assert_error(resp, 409, "illegal_transition")
    assert await live.parts.reads.counter(key("alice")) == FeedPos(seq=2, count=0)


async def test_postponing_a_completed_task_is_409(live: Live) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        await c.post("/api/v1/tasks/t-1/complete")
        resp = await c.post("/api/v1/tasks/t-1/postpone", json={"until": "2099-01-01T00:00:00Z"})
    assert_error(resp, 409, "illegal_transition")


async def test_postpone_stores_time_and_leaves_the_panel(live: Live) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        resp = await c.post("/api/v1/tasks/t-1/postpone", json={"until": "2099-01-01T10:00:00Z"})
    assert resp.status_code == 200
    assert resp.json()["status"] == "postponed"
    assert resp.json()["postponed_until"].startswith("2099-01-01T10:00:00")
    assert await live.parts.reads.counter(key("alice")) == FeedPos(seq=2, count=0, postponed=1)


async def test_postpone_into_the_past_is_422(live: Live) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        resp = await c.post("/api/v1/tasks/t-1/postpone", json={"until": "2001-01-01T00:00:00Z"})
    assert_error(resp, 422, "bad_time")


async def test_process_cancel_cancels_every_open_task_of_the_instance(live: Live) -> None:
    shared = {"instance_id": "p-1", "name": "Invoice approval"}
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("a", "alice", process=shared))
        await c.post("/api/v1/tasks", json=task_body("b", "bob", process=shared))
        await c.post("/api/v1/tasks", json=task_body("c", "carol", process=shared))
        await c.post("/api/v1/tasks/c/postpone", json={"until": "2099-01-01T00:00:00Z"})
        other = task_body("d", "alice", process={"instance_id": "p-2", "name": "Other"})
        await c.post("/api/v1/tasks", json=other)
        resp = await c.post("/api/v1/processes/p-1/cancel")
        assert resp.status_code == 200 and resp.json()["canceled"] == 3
        statuses = {t: (await c.get(f"/api/v1/tasks/{t}")).json()["status"] for t in "abcd"}
    assert statuses == {"a": "canceled", "b": "canceled", "c": "canceled", "d": "running"}
    assert (await live.parts.reads.counter(key("alice"))).count == 1


async def test_batch_applies_ops_in_order_with_per_op_results(live: Live) -> None:
    ops = [
        {"op": "create", "task": task_body("b1")},
        {"op": "create", "task": task_body("b2")},
        {"op": "update", "id": "b1", "changes": {"title": "renamed"}},
        {"op": "complete", "id": "b2"},
        {"op": "cancel", "id": "b2"},
        {"op": "postpone", "id": "b1", "until": "2099-01-01T00:00:00Z"},
        {"op": "complete", "id": "missing"},
    ]
    async with live.producer() as c:
        resp = await c.post("/api/v1/tasks/batch", json={"ops": ops})
    assert resp.status_code == 200, resp.text
    statuses = [r["status"] for r in resp.json()["results"]]
    assert statuses == [201, 201, 200, 200, 409, 200, 404]
    # b1 added, b2 added, b1 updated, b2 removed, b1 removed: five seqs, count back to 0
    assert await live.parts.reads.counter(key("alice")) == FeedPos(seq=5, count=0, postponed=1)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_credentials"),
        ({"Authorization": "Basic abc"}, "missing_credentials"),
        ({"Authorization": "Bearer wrong-key"}, "invalid_producer_key"),
    ],
)
async def test_producer_calls_without_a_valid_key_are_401(
    embedded: Live, headers: dict[str, str], code: str
) -> None:
    async with httpx.AsyncClient(base_url=embedded.base_url, headers=headers) as c:
        resp = await c.post("/api/v1/tasks", json=task_body())
    assert_error(resp, 401, code)


async def test_a_user_token_cannot_create_tasks(embedded: Live) -> None:
    async with embedded.person("alice") as c:
        resp = await c.post("/api/v1/tasks", json=task_body())
    assert_error(resp, 401, "invalid_producer_key")


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        (b"", 400, "malformed_json"),
        (b"[1, 2]", 422, "invalid"),
        (b'{"id": "t"}', 422, "invalid"),
        (b'{"id": 5, "owner": "a", "title": "x"}', 422, "invalid"),
        (b'{"id": "t", "owner": "a", "title": "x", "kind": "fax"}', 422, "invalid"),
        (b'{"id": "t", "owner": "a", "title": "x", "colour": "red"}', 422, "invalid"),
        (b'{"id": "a b", "owner": "a", "title": "x"}', 422, "invalid"),
        (b'{"id": "t", "owner": "a", "title": ""}', 422, "invalid"),
        (b"\xff\xfe", 400, "malformed_json"),
    ],
)
async def test_malformed_create_bodies(embedded: Live, raw: bytes, status: int, code: str) -> None:
    async with embedded.producer() as c:
        resp = await c.post(
            "/api/v1/tasks", content=raw, headers={"Content-Type": "application/json"}
        )
    assert_error(resp, status, code)
    assert await embedded.parts.reads.counter(key("a")) == FeedPos(seq=0, count=0)


async def test_oversized_body_is_413_and_nothing_is_stored(embedded: Live) -> None:
    big = task_body(title="x" * 70_000)
    async with embedded.producer() as c:
        resp = await c.post("/api/v1/tasks", json=big)
        missing = await c.get("/api/v1/tasks/t-1")
    assert_error(resp, 413, "payload_too_large")
    assert missing.status_code == 404


async def test_oversized_streamed_body_without_length_is_413(embedded: Live) -> None:
    async def chunks() -> Any:
        for _ in range(20):
            yield b"x" * 8192

    async with embedded.producer() as c:
        resp = await c.post("/api/v1/tasks", content=chunks())
    assert_error(resp, 413, "payload_too_large")


async def test_patch_with_no_fields_or_unknown_fields_is_422(embedded: Live) -> None:
    async with embedded.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        empty = await c.patch("/api/v1/tasks/t-1", json={})
        unknown = await c.patch("/api/v1/tasks/t-1", json={"status": "completed"})
    assert_error(empty, 422, "empty_patch")
    assert_error(unknown, 422, "invalid")


async def test_patch_of_unknown_task_is_404(embedded: Live) -> None:
    async with embedded.producer() as c:
        resp = await c.patch("/api/v1/tasks/ghost", json={"title": "x"})
    assert_error(resp, 404, "task_not_found")


async def test_batch_limits_and_shape(embedded: Live) -> None:
    async with embedded.producer() as c:
        empty = await c.post("/api/v1/tasks/batch", json={"ops": []})
        unknown_op = await c.post("/api/v1/tasks/batch", json={"ops": [{"op": "explode"}]})
        too_many = await c.post(
            "/api/v1/tasks/batch",
            json={"ops": [{"op": "complete", "id": f"x{i}"} for i in range(501)]},
        )
    assert_error(empty, 422)
    assert_error(unknown_op, 422)
    assert_error(too_many, 422)


async def test_unknown_route_and_wrong_method_answer_json(embedded: Live) -> None:
    async with embedded.producer() as c:
        nowhere = await c.get("/api/v1/nowhere")
        wrong = await c.delete("/api/v1/tasks/t-1")
    assert_error(nowhere, 404, "not_found")
    assert_error(wrong, 405, "method_not_allowed")


async def test_complete_rejects_a_body_other_than_a_decision(embedded: Live) -> None:
    # complete takes {"outcome", "comment"} (a decision); anything else is refused
    async with embedded.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        resp = await c.post("/api/v1/tasks/t-1/complete", json={"force": True})
        still = await c.get("/api/v1/tasks/t-1")
    assert_error(resp, 422, "invalid")
    assert still.json()["status"] == "running"


async def test_expired_user_token_is_401(embedded: Live) -> None:
    async with httpx.AsyncClient(
        base_url=embedded.base_url, headers={"Authorization": f"Bearer {token('a', -60)}"}
    ) as c:
        resp = await c.get("/api/v1/me/counter")
    assert_error(resp, 401, "token_expired")
