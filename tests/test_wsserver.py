"""``server.wsserver``: ``/ws`` on Taskbell's own WebSocket protocol under a real
uvicorn, spoken to in raw frames (``tests.support.rawws``): every protocol error with
its close code, before and after auth, pings, the keepalive sweep, the handshake's
refusals, the client address behind a proxy. Every refusal leaves nothing behind: no
socket, no count of a pending socket, nothing sent but the close."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

import pytest

from server import frames
from server.wssockets import FrameCache
from tests.support.app import Live, make_settings, serve, token
from tests.support.rawws import RawSocket
from tests.support.tasks import task_body

TEXT, CONT, CLOSE, PING, PONG = 0x1, 0x0, 0x8, 0x9, 0xA


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def nothing_left(live: Live) -> Callable[[], bool]:
    """No socket of anyone on the hub, no socket counted as waiting for auth."""
    return lambda: live.parts.hub.connection_count == 0 and not live.app.state.edge.pending


async def authed(live: Live, user: str = "alice") -> tuple[RawSocket, dict[str, object]]:
    sock = await RawSocket.open(live.ws_url)
    assert sock.status == 101
    sock.send_json({"type": "auth", "token": token(user)})
    return sock, await sock.message()


BAD_FRAMES: list[tuple[str, dict[str, object], int]] = [
    ("unmasked", {"opcode": TEXT, "payload": b'{"type":"ping"}', "masked": False}, 1002),
    ("reserved bit", {"opcode": TEXT, "payload": b'{"type":"ping"}', "rsv": 4}, 1002),
    ("unknown opcode", {"opcode": 0x3, "payload": b"x"}, 1002),
    ("long ping", {"opcode": PING, "payload": b"x" * 126}, 1002),
    ("fragmented ping", {"opcode": PING, "payload": b"x", "fin": False}, 1002),
    ("stray continuation", {"opcode": CONT, "payload": b"x"}, 1002),
    ("oversized", {"opcode": TEXT, "payload": b"", "length": 10_000_000}, 1009),
    ("not UTF-8", {"opcode": TEXT, "payload": b'{"type": "ping\xff"}'}, 1007),
    ("close code 999", {"opcode": CLOSE, "payload": struct.pack("!H", 999)}, 1002),
    ("close code 1005", {"opcode": CLOSE, "payload": struct.pack("!H", 1005)}, 1002),
    ("close of one byte", {"opcode": CLOSE, "payload": b"\x03"}, 1002),
    ("close reason", {"opcode": CLOSE, "payload": struct.pack("!H", 1000) + b"\xff"}, 1007),
]


@pytest.mark.parametrize("after_auth", [False, True], ids=["before-auth", "after-auth"])
@pytest.mark.parametrize(
    ("frame", "code"), [(f, c) for _, f, c in BAD_FRAMES], ids=[n for n, _, _ in BAD_FRAMES]
)
async def test_a_protocol_error_closes_with_its_code_and_ends_the_connection(
    embedded: Live, after_auth: bool, frame: dict[str, object], code: int
) -> None:
    if after_auth:
        sock, snap = await authed(embedded)
        assert snap["type"] == "snapshot"
    else:
        sock = await RawSocket.open(embedded.ws_url)
    try:
        sock.send(**frame)  # type: ignore[arg-type]
        got, _ = await sock.closed_with()
        assert got == code
        assert await sock.at_end()
    finally:
        sock.close()
    await until(nothing_left(embedded))


async def test_fragments_with_a_ping_between_make_one_message(embedded: Live) -> None:
    auth = b'{"type": "auth", "token": "' + token("alice").encode() + b'"}'
    sock = await RawSocket.open(embedded.ws_url)
    try:
        sock.send(TEXT, auth[:5], fin=False)
        sock.send(PING, b"between")
        sock.send(CONT, auth[5:20], fin=False)
        sock.send(CONT, auth[20:])
        assert await sock.frame() == (PONG, b"between")  # answered at once
        assert (await sock.message())["type"] == "snapshot"
        sock.send(TEXT, b'{"type":', fin=False)
        sock.send(CONT, b' "ping"}')
        assert await sock.message() == {"type": "pong"}
    finally:
        sock.close()


async def test_the_client_closing_is_echoed_and_the_socket_leaves(embedded: Live) -> None:
    sock, _ = await authed(embedded)
    try:
        assert embedded.parts.hub.connection_count == 1
        sock.send(CLOSE, struct.pack("!H", 1000) + b"bye")
        assert await sock.closed_with() == (1000, "")
        assert await sock.at_end()
    finally:
        sock.close()
    await until(nothing_left(embedded))


async def test_events_reach_the_socket_in_order_each_its_own_frame(embedded: Live) -> None:
    sock, snap = await authed(embedded)
    other, _ = await authed(embedded, "bob")
    try:
        assert snap["seq"] == 0
        async with embedded.producer() as p:
            for i in range(5):
                await p.post("/api/v1/tasks", json=task_body(f"t{i}"))
        got = [await sock.message() for _ in range(5)]
        assert [(m["seq"], m["task"]["id"]) for m in got] == [  # type: ignore[index]
            (i + 1, f"t{i}") for i in range(5)
        ]
        other.send_json({"type": "ping"})
        assert await other.message() == {"type": "pong"}  # nothing of alice's for bob
    finally:
        sock.close()
        other.close()


def test_the_frame_cache_encodes_each_message_object_once() -> None:
    cache = FrameCache()
    first = "".join(["{", '"a": 1', "}"])
    assert cache.of(first) is cache.of(first)
    assert cache.of("{}") == frames.text("{}")
    assert cache.of(first) == frames.text(first)
    same_text = "".join(["{", '"a": 1', "}"])
    assert same_text is not first and cache.of(same_text) == frames.text(first)


async def test_a_silent_peer_is_pinged_then_closed_and_one_that_answers_stays(
    sqlite_url: str,
) -> None:
    async with serve(make_settings(sqlite_url), ws_ping_interval=0.2) as live:
        silent, _ = await authed(live, "alice")
        talking, _ = await authed(live, "bob")
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + 1.5
            pinged = False
            while loop.time() < end:  # bob answers every ping, alice none
                got = await talking.frame(timeout=2)
                assert got is not None and got[0] == PING
                talking.send(PONG, got[1])
                pinged = True
            assert pinged
            assert await silent.frame() == (PING, b"")
            assert (await silent.closed_with()) == (1011, "keepalive ping timeout")
            assert await silent.at_end()
            talking.send_json({"type": "ping"})
            assert await talking.message() == {"type": "pong"}
            assert live.parts.hub.connection_count == 1
        finally:
            silent.close()
            talking.close()


async def test_a_bad_upgrade_is_refused_with_json(embedded: Live) -> None:
    no_key = await RawSocket.open(embedded.ws_url, {"Sec-WebSocket-Key": "short"})
    assert no_key.status == 400 and b'"code":"bad_handshake"' in no_key.body
    old = await RawSocket.open(embedded.ws_url, {"Sec-WebSocket-Version": "8"})
    assert old.status == 426 and b"sec-websocket-version: 13" in old.head.lower()
    await until(nothing_left(embedded))


async def test_another_path_goes_to_the_asgi_app(embedded: Live) -> None:
    sock = await RawSocket.open(embedded.ws_url, path="/elsewhere")
    assert sock.status == 403  # no such WebSocket route: Starlette refuses it


async def test_an_origin_not_on_the_list_gets_403_and_nothing_else(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, allowed_origins=frozenset({"https://app.example.com"}))
    async with serve(settings) as live:
        evil = await RawSocket.open(live.ws_url, {"Origin": "https://app.example.com.evil.test"})
        assert evil.status == 403 and b'"code":"origin_not_allowed"' in evil.body
        good = await RawSocket.open(live.ws_url, {"Origin": "https://app.example.com"})
        try:
            assert good.status == 101
        finally:
            good.close()
        await until(nothing_left(live))


async def pending(live: Live, forwarded_for: str) -> RawSocket:
    sock = await RawSocket.open(live.ws_url, {"X-Forwarded-For": forwarded_for})
    assert sock.status == 101
    return sock


async def test_x_forwarded_for_names_the_client_from_a_trusted_proxy(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, max_pending_sockets_per_address=1)
    async with serve(settings, forwarded_allow_ips="127.0.0.1") as live:
        a = await pending(live, "10.0.0.1")
        b = await pending(live, "10.0.0.2")  # another client behind the same proxy
        c = await pending(live, "10.0.0.1")
        try:
            assert await c.closed_with() == (4029, "too many sockets waiting to authenticate")
            b.send_json({"type": "auth", "token": token("bob")})
            assert (await b.message())["type"] == "snapshot"
            assert dict(live.app.state.edge.pending) == {"10.0.0.1": 1}
        finally:
            for sock in (a, b, c):
                sock.close()
        await until(nothing_left(live))


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(sqlite_url: str) -> None:
    settings = make_settings(sqlite_url, max_pending_sockets_per_address=1)
    async with serve(settings, forwarded_allow_ips="10.9.9.9") as live:
        a = await pending(live, "10.0.0.1")
        b = await pending(live, "10.0.0.2")
        try:
            assert await b.closed_with() == (4029, "too many sockets waiting to authenticate")
            assert dict(live.app.state.edge.pending) == {"127.0.0.1": 1}
        finally:
            a.close()
            b.close()
        await until(nothing_left(live))


async def test_shutdown_closes_every_phase_with_1012(sqlite_url: str) -> None:
    async with serve(make_settings(sqlite_url)) as live:
        joined, _ = await authed(live)
        waiting = await RawSocket.open(live.ws_url)
        closing = [asyncio.create_task(s.closed_with()) for s in (joined, waiting)]
        await asyncio.sleep(0.05)
    try:
        assert [await c for c in closing] == [(1012, "server restarting")] * 2
    finally:
        joined.close()
        waiting.close()
