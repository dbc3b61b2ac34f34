"""Fixtures of the push tests: fast outbox settings, a running receiver, endpoints."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from server.settings import Settings
from tests.push.receiver import Receiver, running
from tests.support.app import Live, serve

FAST = {
    "webhook_allow_private": True,
    "push_allow_private": True,
    "outbox_poll_s": 0.05,
    "outbox_lease_s": 2.0,
    "webhook_retry_base_s": 0.05,
    "webhook_retry_cap_s": 0.2,
    "webhook_timeout_s": 3.0,
}


def fast(settings: Settings, **kw: Any) -> Settings:
    """``settings`` with quick retries and loopback receivers allowed."""
    return replace(settings, **{**FAST, **kw})


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running(Receiver()) as r:
        yield r


@pytest.fixture
async def hooked(backend: Settings) -> AsyncIterator[Live]:
    """A server on both backends with fast webhook retries."""
    async with serve(fast(backend)) as live:
        yield live


async def register(live: Live, url: str, **kw: Any) -> dict[str, Any]:
    """Register a webhook endpoint; returns its JSON (with ``secret``)."""
    async with live.producer() as c:
        resp = await c.post("/api/v1/webhooks", json={"url": url, **kw})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll an async or plain ``check`` until it returns truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
