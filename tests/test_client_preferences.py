"""The producer client's preferences calls against the real server."""

from __future__ import annotations

import asyncio

import pytest

from taskbell_client import AsyncClient, Client
from taskbell_client.errors import Unprocessable
from tests.support.app import PRODUCER_KEY, Live


async def test_setting_and_reading_a_persons_preferences(embedded: Live) -> None:
    async with AsyncClient(embedded.base_url, PRODUCER_KEY) as tb:
        assert (await tb.get_preferences("alice"))["quiet_hours"] is None
        stored = await tb.set_preferences(
            "alice",
            push=False,
            muted_processes=["Invoice approval"],
            quiet_hours=("22:00", "07:00", "Europe/Berlin"),
        )
        read = await tb.get_preferences("alice")
        with pytest.raises(Unprocessable) as refused:
            await tb.set_preferences("alice", quiet_hours=("22:00", "07:00", "Nowhere/Land"))
    assert (
        stored
        == read
        == {
            "channels": {"desktop": True, "push": False},
            "muted_processes": ["Invoice approval"],
            "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"},
        }
    )
    assert refused.value.code == "bad_time_zone"


async def test_the_blocking_client_has_them_too(embedded: Live) -> None:
    def work() -> None:  # in a thread: the server under test runs in this loop
        with Client(embedded.base_url, PRODUCER_KEY) as tb:
            assert tb.set_preferences("bob", desktop=False)["channels"]["desktop"] is False
            assert tb.get_preferences("bob")["channels"]["desktop"] is False

    await asyncio.to_thread(work)
