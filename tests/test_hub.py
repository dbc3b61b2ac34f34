"""The hub and the connection session over the in-memory feed log: gap filling, joins
racing live events, expiry and refresh, and a database that is away. Fast: no sockets,
no database, no sweeper (every catch-up here comes from the hub's own decisions)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from server.auth import User
from server.changes import Envelope
from server.errors import CloseCode, Unavailable
from server.hub import Hub
from server.sequencer import RECENT
from server.upkeep import BEAT_TICKS
from tests.support.feedlog import MemoryFeedLog


class Recorder:
    """A ``Sender`` that keeps what it was sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str | None] | None = None
        self.changed = asyncio.Event()

    async def send_text(self, data: str) -> None:
        self.sent.append(orjson.loads(data))
        self.changed.set()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)
        self.changed.set()

    async def until(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.sent if m["type"].startswith("task.")]

    async def until_seq(self, seq: int) -> None:
        await self.until(lambda: bool(self.seqs()) and self.seqs()[-1] >= seq)


def user(name: str = "alice", ttl: float = 3600) -> User:
    return User(name, time.time() + ttl)


def hub_over(log: MemoryFeedLog) -> Hub:
    return Hub(log, sweep_interval=3600, queue_limit=64)


ALICE = "default/user:alice"


def publish(hub: Hub, log: MemoryFeedLog, key: str = ALICE) -> int:
    """Commit one event of feed ``key`` and deliver its envelope."""
    seq, message = log.add(key)
    hub.on_envelope(Envelope(key, seq, 1, message))
    return seq


async def test_a_single_missing_event_is_read_from_the_log() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    rec = Recorder()
    async with hub.session(rec, user(), None):
        publish(hub, log)
        log.add(ALICE)  # seq 2: committed, its publish lost
        publish(hub, log)  # seq 3 shows the gap
        await rec.until_seq(3)
        assert rec.seqs() == [1, 2, 3]


async def test_a_duplicate_envelope_is_sent_once() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    rec = Recorder()
    async with hub.session(rec, user(), None):
        seq = publish(hub, log)
        hub.on_envelope(Envelope(ALICE, seq, 1, log.events[ALICE][0].message))
        publish(hub, log)
        await rec.until_seq(2)
        assert rec.seqs() == [1, 2]


async def test_events_committed_while_the_first_view_is_read_are_caught_up() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    rec = Recorder()
    log.hold = asyncio.Event()
    joining = asyncio.create_task(hub.session(rec, user(), None).__aenter__())
    await asyncio.sleep(0.01)  # the view (seq 0) is read; now two events arrive
    publish(hub, log)
    publish(hub, log)
    log.hold.set()
    session = await joining
    await rec.until_seq(2)
    assert rec.sent[0]["type"] == "snapshot" and rec.sent[0]["seq"] == 0
    assert rec.seqs() == [1, 2]
    await session.__aexit__(None, None, None)


async def test_a_stale_view_is_patched_from_recent_events() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    first, second = Recorder(), Recorder()
    async with hub.session(first, user(), None):
        publish(hub, log)
        log.hold = asyncio.Event()
        joining = asyncio.create_task(hub.session(second, user(), None).__aenter__())
        await asyncio.sleep(0.01)  # second's view is at seq 1
        publish(hub, log)
        publish(hub, log)
        log.hold.set()
        session = await joining
        reads = log.reads
        await second.until_seq(3)
        assert second.sent[0]["seq"] == 1 and second.seqs() == [2, 3]
        assert log.reads == reads, "recent events were enough: no further read"
        await session.__aexit__(None, None, None)
        assert first.seqs() == [1, 2, 3]


async def test_a_view_older_than_the_recent_events_is_read_again() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    first, second = Recorder(), Recorder()
    async with hub.session(first, user(), None):
        log.hold = asyncio.Event()
        joining = asyncio.create_task(hub.session(second, user(), None).__aenter__())
        await asyncio.sleep(0.01)  # second's view is at seq 0
        for _ in range(RECENT + 3):
            publish(hub, log)
        log.hold.set()
        session = await joining
        assert log.resumes[ALICE] == 3, "first join, second's stale view, second's fresh view"
        assert second.sent[0]["type"] == "snapshot" and second.sent[0]["seq"] == RECENT + 3
        publish(hub, log)
        await second.until_seq(RECENT + 4)
        assert second.seqs() == [RECENT + 4]
        await session.__aexit__(None, None, None)


async def test_a_replay_then_synced_then_live() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    for _ in range(3):
        log.add(ALICE)
    rec = Recorder()
    async with hub.session(rec, user(), 1):
        publish(hub, log)
        await rec.until_seq(4)
    assert [m["type"] for m in rec.sent] == ["task.added", "task.added", "synced", "task.added"]
    assert rec.seqs() == [2, 3, 4]


async def test_leaving_closes_with_1000_and_forgets_the_feed_and_the_user() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    rec = Recorder()
    async with hub.session(rec, user(), None):
        assert hub.connection_count == 1
    assert rec.closed == (CloseCode.NORMAL, "bye")
    assert hub.feeds == {} and hub.users == {}


async def test_the_session_closes_with_4001_when_the_token_expires() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    rec = Recorder()
    async with hub.session(rec, user(ttl=0.05), None):
        await rec.until(lambda: rec.closed is not None)
    assert rec.closed == (CloseCode.NOT_AUTHENTICATED, "token_expired")


async def test_a_refresh_extends_the_session_and_another_user_is_refused() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    rec = Recorder()
    async with hub.session(rec, user(ttl=0.2), None) as session:
        assert session.refresh(user(ttl=3600))
        await asyncio.sleep(0.4)
        assert session.open, "the fresh token moved the expiry"
        assert not session.refresh(user("mallory"))
        assert not session.open
    assert rec.closed == (CloseCode.BAD_MESSAGE, "a connection belongs to one user")


async def test_a_database_away_at_join_is_unavailable_and_closes_1013() -> None:
    log = MemoryFeedLog()
    log.fail = ConnectionRefusedError("down")
    hub = hub_over(log)
    rec = Recorder()
    with pytest.raises(Unavailable):
        async with hub.session(rec, user(), None):
            raise AssertionError("must not be entered")
    assert rec.closed == (CloseCode.TRY_AGAIN_LATER, "database unavailable")
    assert hub.feeds == {} and hub.users == {}


async def test_a_bug_at_join_is_not_called_a_database_problem() -> None:
    log = MemoryFeedLog()
    log.fail = KeyError("a bug")
    hub = hub_over(log)
    rec = Recorder()
    with pytest.raises(KeyError):
        async with hub.session(rec, user(), None):
            raise AssertionError("must not be entered")
    assert hub.feeds == {} and hub.users == {}


async def test_the_heartbeat_carries_the_seq_and_count_each_connection_was_given() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    rec = Recorder()
    async with hub.session(rec, user(), None):
        publish(hub, log)
        seq, message = log.add(ALICE, count=2)
        hub.on_envelope(Envelope(ALICE, seq, 2, message))
        await rec.until_seq(2)
        hub.heartbeat()
        await rec.until(lambda: rec.sent[-1]["type"] == "ping")
    assert rec.sent[-1] == {
        "type": "ping",
        "feeds": {"user:alice": {"seq": 2, "count": 2, "counts": {"running": 2, "postponed": 0}}},
    }


async def test_the_heartbeat_carries_the_postponed_count_that_came_with_the_last_event() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    rec = Recorder()
    async with hub.session(rec, user(), None):
        publish(hub, log)
        seq, message = log.add(ALICE, count=1)
        hub.on_envelope(Envelope(ALICE, seq, 1, message, 3))
        await rec.until_seq(2)
        hub.heartbeat()
        await rec.until(lambda: rec.sent[-1]["type"] == "ping")
    assert rec.sent[-1]["feeds"]["user:alice"]["counts"] == {"running": 1, "postponed": 3}


async def test_a_heartbeat_round_is_spread_over_ticks_and_reaches_every_user() -> None:
    log = MemoryFeedLog()
    hub = hub_over(log)
    recs = {f"u{i}": Recorder() for i in range(40)}
    sessions = [hub.session(rec, user(name), None) for name, rec in recs.items()]
    for s in sessions:
        await s.__aenter__()
    pinged: dict[int, set[str]] = {}
    for tick in range(BEAT_TICKS):
        for rec in recs.values():
            rec.sent.clear()
        hub.heartbeat(tick)
        await asyncio.sleep(0.01)
        pinged[tick] = {n for n, r in recs.items() if any(m["type"] == "ping" for m in r.sent)}
    assert set().union(*pinged.values()) == set(recs), "every user once per round"
    assert sum(len(p) for p in pinged.values()) == len(recs), "and only once"
    assert max(len(p) for p in pinged.values()) < len(recs), "not all in one tick"
    for s in sessions:
        await s.__aexit__(None, None, None)
