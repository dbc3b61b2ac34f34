"""Notification preferences over HTTP (``/api/v1/me/preferences`` and the producer's
``/api/v1/users/{user}/preferences``): defaults, replace, and every bad input answered
with its JSON error; another tenant's person is another person."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from server.settings import Settings
from tests.support.app import Live, serve
from tests.support.audiences import ACME, person, producer, two_tenants
from tests.support.tasks import assert_error

ME = "/api/v1/me/preferences"
DEFAULTS: dict[str, Any] = {
    "channels": {"desktop": True, "push": True},
    "muted_processes": [],
    "quiet_hours": None,
}
NIGHTS = {
    "channels": {"desktop": True, "push": False},
    "muted_processes": ["Invoice approval"],
    "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"},
}


@pytest.fixture
async def tenants(backend: Settings) -> AsyncIterator[Live]:
    async with serve(two_tenants(backend)) as running:
        yield running


async def test_a_person_who_never_saved_gets_the_defaults(tenants: Live) -> None:
    async with person(tenants, "alice") as c:
        resp = await c.get(ME)
    assert resp.status_code == 200
    assert resp.json() == DEFAULTS


async def test_put_replaces_and_get_reads_it_back(tenants: Live) -> None:
    async with person(tenants, "alice") as c:
        put = await c.put(ME, json=NIGHTS)
        got = await c.get(ME)
        # A field left out takes its default again: PUT replaces the whole value.
        again = await c.put(ME, json={"muted_processes": ["Leave request"]})
        last = await c.get(ME)
    assert put.status_code == 200 and put.json() == NIGHTS
    assert got.json() == NIGHTS
    assert again.json() == last.json() == {**DEFAULTS, "muted_processes": ["Leave request"]}


async def test_the_producer_reads_and_sets_a_persons_preferences(tenants: Live) -> None:
    async with producer(tenants) as c:
        put = await c.put("/api/v1/users/alice/preferences", json=NIGHTS)
        got = await c.get("/api/v1/users/alice/preferences")
        bob = await c.get("/api/v1/users/bob/preferences")
    async with person(tenants, "alice") as c:
        mine = await c.get(ME)
    assert put.status_code == 200 and got.json() == NIGHTS and mine.json() == NIGHTS
    assert bob.json() == DEFAULTS


async def test_another_tenants_person_of_the_same_id_is_another_person(tenants: Live) -> None:
    async with person(tenants, "alice", ACME) as c:
        await c.put(ME, json=NIGHTS)
    async with person(tenants, "alice") as c:
        mine = await c.get(ME)
    async with producer(tenants) as c:
        theirs = await c.get("/api/v1/users/alice/preferences")
        await c.put("/api/v1/users/alice/preferences", json={"channels": {"desktop": False}})
    async with producer(tenants, ACME) as c:
        acme = await c.get("/api/v1/users/alice/preferences")
    assert mine.json() == DEFAULTS and theirs.json() == DEFAULTS
    assert acme.json() == NIGHTS


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"}},
            "bad_time_zone",
        ),
        ({"quiet_hours": {"start": "25:00", "end": "07:00", "tz": "UTC"}}, "bad_time"),
        ({"quiet_hours": {"start": "07:00", "end": "07:00", "tz": "UTC"}}, "bad_time"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00"}}, "invalid"),
        ({"channels": {"desktop": True, "sms": True}}, "invalid"),
        ({"sounds": True}, "invalid"),
        ({"channels": {"desktop": "yes"}}, "invalid"),
        ({"muted_processes": ["a", "a"]}, "invalid"),
        ({"muted_processes": [f"p{i}" for i in range(101)]}, "invalid"),
        ({"muted_processes": ["bad\u0000name"]}, "invalid"),
        ([], "invalid"),
    ],
)
async def test_bad_preferences_are_refused_and_nothing_changes(
    tenants: Live, body: Any, code: str
) -> None:
    async with person(tenants, "alice") as c:
        await c.put(ME, json=NIGHTS)
        resp = await c.put(ME, json=body)
        after = await c.get(ME)
    assert_error(resp, 422, code)
    assert after.json() == NIGHTS


async def test_malformed_oversized_and_repeated_key_bodies_are_refused(tenants: Live) -> None:
    async with person(tenants, "alice") as c:
        broken = await c.put(
            ME, content=b'{"channels": ', headers={"content-type": "application/json"}
        )
        empty = await c.put(ME)
        twice = await c.put(ME, content=b'{"quiet_hours": null, "quiet_hours": null}')
        huge = await c.put(ME, content=b'{"muted_processes": ["' + b"x" * 70_000 + b'"]}')
        text = await c.put(ME, content=b"{}", headers={"content-type": "text/plain"})
        after = await c.get(ME)
    assert_error(broken, 400, "malformed_json")
    assert_error(empty, 400, "malformed_json")
    assert_error(twice, 400, "duplicate_key")
    assert_error(huge, 413, "payload_too_large")
    assert_error(text, 415, "unsupported_media_type")
    assert after.json() == DEFAULTS


async def test_wrong_credentials_are_refused(tenants: Live) -> None:
    async with httpx.AsyncClient(base_url=tenants.base_url) as c:
        none = await c.get(ME)
        bad = await c.put(ME, json=DEFAULTS, headers={"Authorization": "Bearer not-a-token"})
    async with producer(tenants) as c:
        producer_on_me = await c.get(ME)
    async with person(tenants, "alice") as c:
        person_on_users = await c.put("/api/v1/users/alice/preferences", json=DEFAULTS)
        other = await c.get("/api/v1/users/bob/preferences")
    assert_error(none, 401, "missing_credentials")
    assert_error(bad, 401)
    assert_error(producer_on_me, 401)
    assert_error(person_on_users, 401, "invalid_producer_key")
    assert_error(other, 401, "invalid_producer_key")


async def test_a_user_id_that_could_name_nobody_is_404(tenants: Live) -> None:
    async with producer(tenants) as c:
        resp = await c.get("/api/v1/users/a%20b/preferences")
    assert_error(resp, 404, "user_not_found")


async def test_concurrent_first_puts_all_succeed_and_one_wins(tenants: Live) -> None:
    """Out of order: many first PUTs of one person at once (no row yet) all answer 200,
    and what is stored is exactly one of them."""
    bodies = [{**DEFAULTS, "muted_processes": [f"process {i}"]} for i in range(8)]
    async with person(tenants, "carol") as c:
        answers = await asyncio.gather(*(c.put(ME, json=b) for b in bodies))
        stored = (await c.get(ME)).json()
    assert [a.status_code for a in answers] == [200] * len(bodies), [a.text for a in answers]
    assert stored in bodies


async def test_a_revoked_token_may_not_read_or_write(tenants: Live) -> None:
    async with person(tenants, "dave") as c:
        async with producer(tenants) as p:
            assert (await p.post("/api/v1/users/dave/revoke")).status_code == 200
        read = await c.get(ME)
        write = await c.put(ME, json=NIGHTS)
    assert_error(read, 401, "token_revoked")
    assert_error(write, 401, "token_revoked")
