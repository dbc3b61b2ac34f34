"""``Connection``'s sending: what a socket takes at once is sent in the call that queued
it, with no task; a send that has to wait goes on in a writer task with the rest of the
queue behind it, in order; a peer gone on either path ends the connection's sending."""

from __future__ import annotations

import asyncio

from server.connection import Connection, ConnState


class Gated:
    """A sender that takes messages at once while ``open`` is set, and waits otherwise."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.open = asyncio.Event()
        self.open.set()
        self.fail: Exception | None = None

    async def send_text(self, data: str) -> None:
        await self.open.wait()
        if self.fail is not None:
            raise self.fail
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


def started(sender: Gated, limit: int = 16) -> Connection:
    conn = Connection(sender, "default", "alice", limit)
    conn.start()
    return conn


async def test_a_writable_socket_is_sent_to_in_the_call_with_no_task() -> None:
    sender = Gated()
    conn = started(sender)
    conn.push_raw("a")
    conn.push_raw("b")
    assert sender.sent == ["a", "b"], "sent before anything else ran"
    assert conn._writer is None


async def test_a_send_that_waits_goes_on_in_a_task_and_keeps_the_order() -> None:
    sender = Gated()
    conn = started(sender)
    conn.push_raw("a")
    sender.open.clear()
    conn.push_raw("b")  # waits
    assert sender.sent == ["a"] and conn._writer is not None
    sender.open.set()  # writable again, but "b" is not out yet:
    conn.push_raw("c")  # so "c" goes behind it
    assert sender.sent == ["a"]
    await conn._writer
    assert sender.sent == ["a", "b", "c"]
    conn.push_raw("d")  # writable again: at once
    assert sender.sent == ["a", "b", "c", "d"]


async def test_closing_cancels_a_waiting_send_and_drops_the_queue() -> None:
    sender = Gated()
    conn = started(sender)
    sender.open.clear()
    conn.push_raw("a")
    conn.push_raw("b")
    writer = conn._writer
    assert writer is not None
    conn.close(1000, "bye")
    await conn.wait_closed()
    assert writer.cancelled() and sender.sent == []


async def test_a_peer_gone_stops_the_sending_on_either_path() -> None:
    at_once = Gated()
    at_once.fail = ConnectionResetError("gone")
    conn = started(at_once)
    conn.push_raw("a")
    assert conn.state is ConnState.CLOSING
    conn.push_raw("b")
    assert at_once.sent == []

    later = Gated()
    conn = started(later)
    later.open.clear()
    conn.push_raw("a")
    conn.push_raw("b")
    later.fail = ConnectionResetError("gone")
    later.open.set()
    assert conn._writer is not None
    await conn._writer
    assert conn.state is ConnState.CLOSING and later.sent == []


async def test_a_heartbeat_skips_a_socket_still_taking_a_long_replay() -> None:
    sender = Gated()
    conn = started(sender, limit=4)
    sender.open.clear()
    for i in range(10):
        conn.push_raw(f"replay {i}")  # outside the limit
    conn.beat("ping")
    assert conn.state is ConnState.OPEN, "not closed as too slow for the server's own ping"
    sender.open.set()
    assert conn._writer is not None
    await conn._writer
    assert sender.sent == [f"replay {i}" for i in range(10)]
    conn.beat("ping")
    assert sender.sent[-1] == "ping"
