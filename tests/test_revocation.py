"""Revoking a person: their open sockets and event streams close with 4001 ``revoked``
on every instance within 5 s, and tokens issued before it answer 401 ``token_revoked``;
a token issued afterwards works. Two real server processes on Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from server.auth import mint_token
from tests.support.app import SECRET, Live, token
from tests.support.client import FeedClient
from tests.support.server_proc import ServerProcess
from tests.support.tasks import assert_error
from tests.test_scaleout import cluster, producer_for

__all__ = ["cluster"]  # the fixture


def later_token(user: str) -> str:
    """A token issued a second after now (iat is whole seconds)."""
    return mint_token(SECRET, user, 3600, now=time.time() + 1)


@pytest.mark.slow
async def test_revoking_closes_sockets_on_every_instance_and_refuses_old_tokens(
    cluster: tuple[ServerProcess, ServerProcess, str],
) -> None:
    a, b, _ = cluster
    old = token("alice")
    on_a, on_b = FeedClient(a.ws_url, old), FeedClient(b.ws_url, old)
    bob = FeedClient(b.ws_url, token("bob"))
    for feed in (on_a, on_b, bob):
        await feed.connect()
    async with producer_for(a) as p:
        resp = await p.post("/api/v1/users/alice/revoke")
        started = time.monotonic()
        assert resp.status_code == 200 and resp.json()["user"] == "alice"
        closes = await asyncio.gather(on_a.closed_with(timeout=5), on_b.closed_with(timeout=5))
        took = time.monotonic() - started
    assert list(closes) == [(4001, "revoked"), (4001, "revoked")]
    assert took < 5
    async with httpx.AsyncClient(base_url=b.base_url) as c:
        refused = await c.get("/api/v1/me/counter", headers={"Authorization": f"Bearer {old}"})
        fresh = await c.get(
            "/api/v1/me/counter", headers={"Authorization": f"Bearer {later_token('alice')}"}
        )
        other = await c.get(
            "/api/v1/me/counter", headers={"Authorization": f"Bearer {token('bob')}"}
        )
    assert_error(refused, 401, "token_revoked")
    assert fresh.status_code == 200 and other.status_code == 200
    assert await bob.before_pong(5) == []  # bob's socket was not touched
    await bob.close()


async def test_a_revoked_token_cannot_open_a_socket_or_stream_or_refresh(live: Live) -> None:
    old = token("carol")
    async with FeedClient(live.ws_url, old) as kept:
        await kept.connect()
        async with live.producer() as p:
            assert (await p.post("/api/v1/users/carol/revoke")).status_code == 200
        assert await kept.closed_with(timeout=5) == (4001, "revoked")
    async with FeedClient(live.ws_url, old) as again:
        with pytest.raises(ConnectionClosed) as refused:
            await again.connect()
    assert refused.value.rcvd is not None
    assert (refused.value.rcvd.code, refused.value.rcvd.reason) == (4001, "token_revoked")
    async with httpx.AsyncClient(base_url=live.base_url) as c:
        stream = await c.get("/events", headers={"Authorization": f"Bearer {old}"})
    assert_error(stream, 401, "token_revoked")
    async with FeedClient(live.ws_url, later_token("carol")) as fresh:
        assert (await fresh.connect())["type"] == "snapshot"
        await fresh.send({"type": "auth", "token": old})  # a refresh with the old token
        assert await fresh.closed_with(timeout=5) == (4001, "token_revoked")


async def test_revoking_is_for_producers_only(live: Live) -> None:
    async with live.person("dave") as me:
        resp = await me.post("/api/v1/users/dave/revoke")
    assert_error(resp, 401)
    async with live.producer() as p:
        bad = await p.post("/api/v1/users/a b/revoke")
    assert_error(bad, 404)
