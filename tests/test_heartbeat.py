"""The server's heartbeat on /ws: a ping carrying the feed's seq and count as this
socket was given them, on both databases."""

from __future__ import annotations

import dataclasses

from server.settings import Settings
from tests.support.app import serve, token
from tests.support.client import FeedClient
from tests.support.tasks import task_body


async def test_the_heartbeat_says_where_the_feed_stands(backend: Settings) -> None:
    settings = dataclasses.replace(backend, heartbeat_s=0.2)
    async with serve(settings) as live, FeedClient(live.ws_url, token("alice")) as feed:
        await feed.connect()
        async with live.producer() as p:
            await p.post("/api/v1/tasks", json=task_body("h1"))
            await p.post("/api/v1/tasks", json=task_body("h2"))
            await p.post("/api/v1/tasks/h1/complete")
        await feed.until_seq(3)
        while not feed.heartbeats or feed.heartbeats[-1]["feeds"]["user:alice"]["seq"] < 3:
            await feed.recv(5, heartbeats=True)
    assert feed.heartbeats[-1] == {
        "type": "ping",
        "feeds": {"user:alice": {"seq": 3, "count": 1, "counts": {"running": 1, "postponed": 0}}},
    }
