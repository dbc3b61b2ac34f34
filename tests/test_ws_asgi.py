"""``/ws`` as the ASGI endpoint (``server.api.ws``) under stock uvicorn
(``ws="websockets-sansio"``), the way any ASGI server runs the app: the same rules
(``server.socket_rules``) as Taskbell's own protocol, which the rest of the suite
goes through."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect

from tests.support.app import Live, make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.stalled import StalledClient, flood_until_too_slow
from tests.support.tasks import task_body

STOCK = {"ws": "websockets-sansio", "ws_ping_interval": 20.0}


@pytest.fixture
async def stock(sqlite_url: str) -> AsyncIterator[Live]:
    async with serve(make_settings(sqlite_url, send_queue_size=40), **STOCK) as running:
        yield running


async def test_snapshot_live_events_ping_and_reauth(stock: Live) -> None:
    async with FeedClient(stock.ws_url, token("alice")) as feed:
        snap = await feed.connect()
        assert snap["type"] == "snapshot"
        async with stock.producer() as p:
            await p.post("/api/v1/tasks", json=task_body("t1"))
        await feed.until_seq(1)
        await feed.send({"type": "auth", "token": token("alice")})
        await feed.send({"type": "ping"})
        assert await feed.before_pong() == []
        await feed.send({"type": "auth", "token": token("bob")})
        assert (await feed.closed_with())[0] == 1008


async def closed(live: Live, *messages: str | bytes) -> tuple[int | None, str]:
    async with connect(live.ws_url, max_size=None) as ws:
        for message in messages:
            await ws.send(message)
        feed = FeedClient(live.ws_url, "")
        feed.ws = ws
        return await feed.closed_with()


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        (['{"type": "ping"}'], 4001),
        (['{"type": "auth", "token": "garbage"}'], 4001),
        (["not json"], 1008),
        (['{"type": "ping", "pad": "' + "x" * 70_000 + '"}'], 1009),
    ],
)
async def test_refusals_close_with_their_codes(stock: Live, messages: list[str], code: int) -> None:
    assert (await closed(stock, *messages))[0] == code
    assert not stock.app.state.edge.pending


async def test_a_reader_that_stalls_is_closed_4008(stock: Live) -> None:
    stalled = StalledClient(stock.ws_url, token("alice"))
    try:
        await stalled.connect_and_stall()
        await flood_until_too_slow(stock)
        assert (await stalled.read_until_close())[0] == 4008
    finally:
        stalled.close()


async def test_shutdown_closes_with_1012(sqlite_url: str) -> None:
    feed = FeedClient("", token("alice"))
    async with serve(make_settings(sqlite_url), **STOCK) as live:
        feed.ws_url = live.ws_url
        await feed.connect()
    assert (await feed.closed_with())[0] == 1012
