"""The origin allow-list (``TASKBELL_ALLOWED_ORIGINS``) for ``/ws`` and the event stream:
exact origins only, refused at the handshake with 403 before the endpoint runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from server.errors import ConfigError
from server.origins import allowed
from server.settings import Settings
from tests.support.app import PRODUCER_KEY, SECRET, Live, make_settings, serve, token
from tests.support.client import FeedClient

APP = "https://app.example.com"
LIST = frozenset({APP, "http://localhost:5173"})

LOOK_ALIKES = [
    "https://app.example.com.evil.test",
    "https://evil-app.example.com",
    "https://xapp.example.com",
    "http://app.example.com",  # another scheme
    "https://app.example.com:8443",  # another port
    "https://app.example.com/",  # not an origin
    "https://APP.example.com",
    " https://app.example.com",
    "null",
    "",
]


def test_no_list_allows_every_origin() -> None:
    assert allowed("https://anything.test", frozenset())
    assert allowed("null", frozenset())


def test_a_listed_origin_is_allowed() -> None:
    assert allowed(APP, LIST)
    assert allowed("http://localhost:5173", LIST)


@pytest.mark.parametrize("origin", LOOK_ALIKES)
def test_look_alike_origins_are_refused(origin: str) -> None:
    assert not allowed(origin, LIST)


def test_a_request_without_an_origin_is_allowed() -> None:
    assert allowed(None, LIST)


def test_allowed_origins_are_read_from_the_environment() -> None:
    env = {"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY}
    env["TASKBELL_ALLOWED_ORIGINS"] = f"{APP}, http://localhost:5173"
    assert Settings.from_env(env).allowed_origins == LIST


@pytest.mark.parametrize("entry", ["null", "app.example.com", "https://app.example.com/"])
def test_an_allowed_origin_that_is_not_an_origin_refuses_to_start(entry: str) -> None:
    env = {"TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY}
    env["TASKBELL_ALLOWED_ORIGINS"] = entry
    with pytest.raises(ConfigError, match="TASKBELL_ALLOWED_ORIGINS"):
        Settings.from_env(env)


@pytest.fixture
async def guarded(sqlite_url: str) -> AsyncIterator[Live]:
    async with serve(make_settings(sqlite_url, allowed_origins=LIST)) as running:
        yield running


async def test_a_websocket_from_a_listed_origin_connects(guarded: Live) -> None:
    async with FeedClient(guarded.ws_url, token("alice")) as feed:
        first = await feed.connect(origin=APP)
    assert first["type"] == "snapshot"


async def test_a_websocket_without_an_origin_connects(guarded: Live) -> None:
    async with FeedClient(guarded.ws_url, token("alice")) as feed:
        first = await feed.connect()
    assert first["type"] == "snapshot"


@pytest.mark.parametrize(
    "origin", ["https://app.example.com.evil.test", "null", "http://app.example.com"]
)
async def test_a_websocket_from_another_origin_is_refused_with_403(
    guarded: Live, origin: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(guarded.ws_url, origin=origin)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    assert b"origin_not_allowed" in refused.value.response.body


async def test_a_refused_websocket_never_joins_the_hub(guarded: Live) -> None:
    with pytest.raises(InvalidStatus):
        await connect(guarded.ws_url, origin="https://evil.test")  # type: ignore[arg-type]
    assert guarded.parts.hub.connection_count == 0


async def test_an_event_stream_with_two_origin_headers_is_refused(guarded: Live) -> None:
    headers = [
        ("Authorization", f"Bearer {token('alice')}"),
        ("Origin", APP),
        ("Origin", "https://evil.test"),
    ]
    async with httpx.AsyncClient(base_url=guarded.base_url) as c:
        resp = await c.get("/events", headers=headers)
    assert resp.status_code == 403


@pytest.mark.parametrize("path", ["/events", "/api/v1/events"])
async def test_the_event_stream_from_another_origin_is_403_json(guarded: Live, path: str) -> None:
    headers = {"Authorization": f"Bearer {token('alice')}", "Origin": "https://evil.test"}
    async with httpx.AsyncClient(base_url=guarded.base_url, headers=headers) as c:
        resp = await c.get(path)
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "origin_not_allowed"


async def test_the_event_stream_from_a_listed_origin_streams(guarded: Live) -> None:
    headers = {"Authorization": f"Bearer {token('alice')}", "Origin": APP}
    async with (
        httpx.AsyncClient(base_url=guarded.base_url, headers=headers) as c,
        c.stream("GET", "/events") as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")


async def test_other_api_calls_are_not_origin_checked(guarded: Live) -> None:
    headers = {"Authorization": f"Bearer {token('alice')}", "Origin": "https://evil.test"}
    async with httpx.AsyncClient(base_url=guarded.base_url, headers=headers) as c:
        resp = await c.get("/api/v1/me/counter")
    assert resp.status_code == 200


async def test_without_a_list_any_origin_connects(embedded: Live) -> None:
    async with FeedClient(embedded.ws_url, token("alice")) as feed:
        first = await feed.connect(origin="https://anything.test")
    assert first["type"] == "snapshot"
