"""Socket caps through a real server: sockets (and event streams) per user, sockets per
client address that have not authenticated yet, and messages per second per socket.
Over a cap a socket is closed with 4029 and a stream answers 429."""

from __future__ import annotations

import asyncio

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.push.sse import open_stream
from tests.support.app import Live, make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.tasks import assert_error


async def closed_with(ws: ClientConnection, timeout: float = 10.0) -> tuple[int | None, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")


async def refused(live: Live, user: str) -> tuple[int | None, str]:
    """Connect and authenticate as ``user``; how the server closed the socket."""
    async with connect(live.ws_url) as ws:
        await ws.send(orjson.dumps({"type": "auth", "token": token(user)}).decode())
        return await closed_with(ws)


async def until(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_user_over_the_socket_cap_is_closed_4029_and_others_are_not(
    sqlite_url: str,
) -> None:
    async with serve(make_settings(sqlite_url, max_sockets_per_user=2)) as live:
        first = FeedClient(live.ws_url, token("alice"))
        second = FeedClient(live.ws_url, token("alice"))
        await first.connect()
        await second.connect()
        assert await refused(live, "alice") == (4029, "too many sockets for this user")
        async with FeedClient(live.ws_url, token("bob")) as bob:
            assert (await bob.connect())["type"] == "snapshot"
        # The cap counts open sockets: one closes, a new one is let in.
        await first.close()
        await until(lambda: live.parts.hub.sockets_of("default", "alice") == 1)
        async with FeedClient(live.ws_url, token("alice")) as third:
            assert (await third.connect())["type"] == "snapshot"
            await third.send({"type": "ping"})
            assert (await third.recv())["type"] == "pong"
        await second.close()


async def test_event_streams_count_toward_the_cap_and_get_429(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, max_sockets_per_user=2)
    async with serve(settings) as live, FeedClient(live.ws_url, token("alice")) as ws:
        await ws.connect()
        async with open_stream(live.base_url, token=token("alice")) as sse:
            assert (await sse.next()).event == "snapshot"
            async with live.person("alice") as c:
                over = await c.get("/api/v1/events")
            assert_error(over, 429, "too_many_sockets")
            assert int(over.headers["retry-after"]) >= 1
            assert await refused(live, "alice") == (4029, "too many sockets for this user")
            async with open_stream(live.base_url, token=token("bob")) as other:
                assert (await other.next()).event == "snapshot"


async def test_unauthenticated_sockets_per_address_are_capped(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, max_pending_sockets_per_address=2, auth_timeout_s=30.0)
    async with serve(settings) as live:
        edge = live.app.state.edge
        waiting = [await connect(live.ws_url), await connect(live.ws_url)]
        await until(lambda: sum(edge.pending.values()) == 2)
        async with connect(live.ws_url) as third:
            assert await closed_with(third) == (4029, "too many sockets waiting to authenticate")
        # Authenticating frees the place: the next socket is let in.
        await waiting[0].send(orjson.dumps({"type": "auth", "token": token("alice")}).decode())
        assert orjson.loads(await waiting[0].recv())["type"] == "snapshot"
        await until(lambda: sum(edge.pending.values()) == 1)
        async with FeedClient(live.ws_url, token("bob")) as bob:
            assert (await bob.connect())["type"] == "snapshot"
        # So does leaving without authenticating.
        await waiting[1].close()
        await until(lambda: not edge.pending)
        for ws in waiting:
            await ws.close()


async def test_a_socket_that_fails_to_authenticate_frees_its_place(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, max_pending_sockets_per_address=1)
    async with serve(settings) as live:
        for _ in range(3):
            async with connect(live.ws_url) as ws:
                await ws.send(orjson.dumps({"type": "auth", "token": "bad"}).decode())
                assert (await closed_with(ws))[0] == 4001
        async with FeedClient(live.ws_url, token("alice")) as feed:
            assert (await feed.connect())["type"] == "snapshot"
        assert not live.app.state.edge.pending


async def test_a_socket_flooding_messages_is_closed_4029(sqlite_url: str) -> None:
    async with (
        serve(make_settings(sqlite_url, ws_message_rate=5.0)) as live,  # burst 10
        FeedClient(live.ws_url, token("alice")) as calm,
        FeedClient(live.ws_url, token("alice")) as flood,
    ):
        await calm.connect()
        await flood.connect()
        # Up to the burst is fine, and so is a ping after a pause.
        for _ in range(10):
            await calm.send({"type": "ping"})
        assert [(await calm.recv())["type"] for _ in range(10)] == ["pong"] * 10
        await asyncio.sleep(0.5)
        await calm.send({"type": "ping"})
        assert (await calm.recv())["type"] == "pong"
        # A flood is not.
        try:
            for _ in range(200):
                await flood.send({"type": "ping"})
        except ConnectionClosed:
            pass  # closed before the flood was over
        assert await flood.closed_with() == (4029, "too many messages")
        await calm.send({"type": "ping"})
        assert (await calm.recv())["type"] == "pong"
