"""Time at the edge: every time that enters over HTTP carries a zone, is converted to UTC
once, and is answered (and comes back) in UTC; naive, numeric and out-of-range times
are a 422 ``bad_time``, never a 500."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.wire import iso
from tests.support.app import Live, token
from tests.support.client import FeedClient
from tests.support.tasks import assert_error, task_body

PLUS_TWO = timezone(timedelta(hours=2))


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("2030-01-01T10:00:00+02:00", "2030-01-01T08:00:00.000000Z"),
        ("2030-01-01T10:00:00Z", "2030-01-01T10:00:00.000000Z"),
        ("2030-01-01T10:00:00-14:00", "2030-01-02T00:00:00.000000Z"),
    ],
)
async def test_postponed_until_on_create_is_stored_and_answered_in_utc(
    live: Live, sent: str, stored: str
) -> None:
    async with live.producer() as c:
        created = await c.post("/api/v1/tasks", json=task_body(postponed_until=sent))
        read = await c.get("/api/v1/tasks/t-1")
    assert created.status_code == 201, created.text
    assert created.json()["postponed_until"] == stored
    assert read.json()["postponed_until"] == stored


async def test_postpone_until_with_an_offset_is_answered_in_utc(live: Live) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        resp = await c.post(
            "/api/v1/tasks/t-1/postpone", json={"until": "2030-01-01T10:00:00+02:00"}
        )
        read = await c.get("/api/v1/tasks/t-1")
    assert resp.json()["postponed_until"] == "2030-01-01T08:00:00.000000Z"
    assert read.json()["postponed_until"] == "2030-01-01T08:00:00.000000Z"


async def test_patch_and_batch_times_are_converted_to_utc(live: Live) -> None:
    ops = [
        {"op": "create", "task": task_body("b1")},
        {"op": "postpone", "id": "b1", "until": "2030-06-01T12:00:00+02:00"},
    ]
    async with live.producer() as c:
        batch = await c.post("/api/v1/tasks/batch", json={"ops": ops})
        patched = await c.patch(
            "/api/v1/tasks/b1", json={"postponed_until": "2030-06-02T09:30:00-05:00"}
        )
    assert batch.json()["results"][1]["task"]["postponed_until"] == "2030-06-01T10:00:00.000000Z"
    assert patched.json()["postponed_until"] == "2030-06-02T14:30:00.000000Z"


async def test_a_task_postponed_with_an_offset_comes_back_on_time(live: Live) -> None:
    due = datetime.now(PLUS_TWO) + timedelta(seconds=2)
    async with FeedClient(live.ws_url, token("alice")) as feed:
        await feed.connect()
        async with live.producer() as c:
            resp = await c.post("/api/v1/tasks", json=task_body(postponed_until=due.isoformat()))
        assert resp.json()["status"] == "postponed", resp.text
        # First the counts-only event of a task created postponed (docs/protocol.md,
        # "Live counts"), then its return.
        counted = await feed.recv(timeout=8)
        back = await feed.recv(timeout=8)
    assert (counted["type"], counted["reason"], counted["counts"]["postponed"]) == (
        "task.removed",
        "created",
        1,
    )
    assert (back["type"], back["reason"]) == ("task.added", "resumed")
    late = datetime.now(UTC) - due
    assert timedelta(0) <= late < timedelta(seconds=4), late


BAD_TIMES: list[Any] = [
    "2030-01-01T00:00:00",  # naive
    "2030-01-01",  # a date is naive midnight
    "9999-12-31T23:59:59-14:00",  # past year 9999 once in UTC
    "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC
    1893456000,  # a Unix timestamp
    "1893456000",  # ... as text
    1893456000.5,
    "next tuesday",
]


@pytest.mark.parametrize("until", BAD_TIMES)
async def test_unusable_postpone_times_are_422_bad_time(live: Live, until: Any) -> None:
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body())
        resp = await c.post("/api/v1/tasks/t-1/postpone", json={"until": until})
        after = await c.get("/api/v1/tasks/t-1")
    assert_error(resp, 422, "bad_time")
    assert after.json()["status"] == "running"


@pytest.mark.parametrize("until", ["2030-01-01T00:00:00", "9999-12-31T23:59:59-14:00", 1893456000])
async def test_unusable_times_on_create_patch_and_batch_are_422(live: Live, until: Any) -> None:
    async with live.producer() as c:
        create = await c.post("/api/v1/tasks", json=task_body("c1", postponed_until=until))
        await c.post("/api/v1/tasks", json=task_body("p1", postponed_until="2030-01-01T00:00:00Z"))
        patch = await c.patch("/api/v1/tasks/p1", json={"postponed_until": until})
        batch = await c.post(
            "/api/v1/tasks/batch", json={"ops": [{"op": "postpone", "id": "p1", "until": until}]}
        )
    assert_error(create, 422, "bad_time")
    assert_error(patch, 422, "bad_time")
    assert_error(batch, 422, "bad_time")


def test_iso_converts_an_aware_time_to_utc() -> None:
    assert iso(datetime(2030, 1, 1, 10, 0, tzinfo=PLUS_TWO)) == "2030-01-01T08:00:00.000000Z"


def test_iso_takes_a_naive_time_as_utc() -> None:
    assert iso(datetime(2030, 1, 1, 10, 0)) == "2030-01-01T10:00:00.000000Z"


@settings(max_examples=2000)
@given(
    st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    st.one_of(st.none(), st.integers(-23 * 60, 23 * 60)),
)
def test_iso_is_one_format_for_every_time(naive: datetime, offset: int | None) -> None:
    """Always 6 digits of microseconds and a Z, the year padded to 4 digits."""
    dt = naive if offset is None else naive.replace(tzinfo=timezone(timedelta(minutes=offset)))
    utc = dt if offset is None else dt.astimezone(UTC).replace(tzinfo=None)
    expected = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond:06d}Z"
    )
    assert iso(dt) == expected


async def test_a_naive_postpone_next_to_other_writes_fails_alone(live: Live) -> None:
    """The refusal happens at the edge, before group commit: the concurrent creates
    are stored and answered as if the bad request had not been there."""
    async with live.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("x"))
        answers = await asyncio.gather(
            c.post("/api/v1/tasks/x/postpone", json={"until": "2030-01-01T00:00:00"}),
            *(c.post("/api/v1/tasks", json=task_body(f"g{i}")) for i in range(10)),
        )
    assert_error(answers[0], 422, "bad_time")
    assert [a.status_code for a in answers[1:]] == [201] * 10


async def test_a_stats_window_with_an_offset_is_read_in_utc(live: Live) -> None:
    """``from`` an hour ago written in +02:00 includes an instance started now."""
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(PLUS_TWO).isoformat()
    async with live.producer() as c:
        await c.post("/api/v1/processes", json={"id": "p-1", "name": "Onboarding"})
        resp = await c.get("/api/v1/processes/stats", params={"from": hour_ago})
    assert [p["name"] for p in resp.json()["processes"]] == ["Onboarding"], resp.text


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-14:00", "2030-01-01T00:00:00", "1893456000"]
)
async def test_an_unusable_stats_window_is_400_bad_query(embedded: Live, value: str) -> None:
    async with embedded.producer() as c:
        resp = await c.get("/api/v1/processes/stats", params={"to": value})
    assert_error(resp, 400, "bad_query")
