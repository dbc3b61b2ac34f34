"""The hub's upkeep on timers of its own: the heartbeat round and the periodic sweep.

``beat`` queues a ping on every live connection of the users in one phase, carrying
every followed feed's position as that connection was given it (a client whose own
state differs resynchronises); a round is spread over ``BEAT_TICKS`` ticks by user,
because pinging every socket at once would hold up live events behind thousands of
pings. ``every`` runs the sweep (``Hub.sweep``) every few seconds until told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Awaitable, Callable, Iterable

from server.connection import ConnState
from server.following import UserState
from server.views import pos_json
from server.wire import HeartbeatMessage, dumps

BEAT_TICKS = 25  # a heartbeat round is spread over this many ticks (users hashed in)


def phase_of(tenant: str, user: str) -> int:
    """The tick of a round at which ``user``'s connections are pinged."""
    return zlib.crc32(f"{tenant}/{user}".encode()) % BEAT_TICKS


def beat(users: Iterable[UserState], tick: int | None) -> None:
    """Queue a ping on every live connection of ``users`` (only those in phase ``tick``,
    when given), encoded once per user and set of positions."""
    for us in users:
        if tick is not None and us.phase != tick:
            continue
        encoded: dict[tuple[tuple[str, int, int, int], ...], str] = {}
        for conn in us.conns:
            if conn.state is not ConnState.OPEN:
                continue
            where = tuple((p.feed, p.seq, p.count, p.postponed) for p in conn.feeds.values())
            message = encoded.get(where)
            if message is None:
                ping: HeartbeatMessage = {
                    "type": "ping",
                    "feeds": {f: pos_json(s, n, m) for f, s, n, m in where},
                }
                message = encoded[where] = dumps(ping)
            conn.beat(message)


async def beat_forever(
    interval_s: float, stopping: asyncio.Event, heartbeat: Callable[[int], None]
) -> None:
    """One round every ``interval_s``, one tick at a time. The first round starts a
    whole interval after start-up, as a single timer would."""
    tick = 0
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), interval_s)
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s / BEAT_TICKS)
        if not stopping.is_set():
            heartbeat(tick)
            tick = (tick + 1) % BEAT_TICKS


async def every(
    interval_s: float, stopping: asyncio.Event, work: Callable[[], Awaitable[None]]
) -> None:
    """``work`` every ``interval_s`` until ``stopping`` is set (not at start-up)."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)
        if not stopping.is_set():
            await work()
