"""One contract for every broker (memory, Redis), plus Redis's own failure handling."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from server.broker import Broker, decode, encode
from server.broker.memory import MemoryBroker
from server.broker.redis import RedisBroker
from server.changes import Envelope
from tests.support.services import RedisServer


class Recorder:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.resyncs = 0
        self.changed = asyncio.Event()

    def on_envelope(self, env: Envelope) -> None:
        self.envelopes.append(env)
        self.changed.set()

    def on_resync(self) -> None:
        self.resyncs += 1
        self.changed.set()

    async def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                # broker.healthy changes without a callback: look again now and then
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)


@pytest.fixture(params=["memory", "redis"])
async def pair(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Broker, Broker, Recorder]]:
    """A publishing broker and a (possibly other-process-like) listening broker."""
    rec = Recorder()
    if request.param == "memory":
        one = MemoryBroker()
        await one.start(rec.on_envelope, rec.on_resync)
        yield one, one, rec
        await one.stop()
        return
    redis: RedisServer = request.getfixturevalue("redis_server")
    publisher, listener = RedisBroker(redis.url), RedisBroker(redis.url)
    await publisher.start(lambda env: None, lambda: None)
    await listener.start(rec.on_envelope, rec.on_resync)
    await rec.wait_for(lambda: listener.healthy)
    yield publisher, listener, rec
    await publisher.stop()
    await listener.stop()


def test_envelope_round_trips_through_its_encoding() -> None:
    env = Envelope("al ice\n", 7, 3, '{"type":"task.added","x":"a\\nb"}')
    assert decode(env.owner, encode(env)) == env


async def test_published_envelopes_arrive_in_order(pair: tuple[Broker, Broker, Recorder]) -> None:
    publisher, listener, rec = pair
    sent = [Envelope(f"owner-{i % 3}", i, i % 5, f'{{"n":{i}}}') for i in range(1, 51)]
    await publisher.publish(sent[:25])
    await publisher.publish(sent[25:])
    await rec.wait_for(lambda: len(rec.envelopes) >= 50)
    assert rec.envelopes == sent
    assert listener.healthy


async def test_redis_listener_reconnects_and_asks_for_a_resync() -> None:
    with RedisServer() as redis:
        redis.start()
        rec = Recorder()
        broker = RedisBroker(redis.url, check_interval=0.3)
        await broker.start(rec.on_envelope, rec.on_resync)
        await rec.wait_for(lambda: rec.resyncs == 1)
        await asyncio.to_thread(redis.kill)
        await rec.wait_for(lambda: not broker.healthy)
        # Publishing during the outage neither raises nor blocks for long.
        async with asyncio.timeout(5):
            await broker.publish([Envelope("a", 1, 1, "{}")])
        await asyncio.to_thread(redis.start)
        await rec.wait_for(lambda: rec.resyncs == 2 and broker.healthy, timeout=15)
        await broker.stop()


async def test_a_deaf_subscription_is_found_and_replaced() -> None:
    with RedisServer() as redis:
        redis.start()
        rec = Recorder()
        broker = RedisBroker(redis.url, check_interval=0.3)
        await broker.start(rec.on_envelope, rec.on_resync)
        await rec.wait_for(lambda: rec.resyncs == 1)
        redis.suspend()  # connected, but nothing comes back: own pings go unanswered
        try:
            await rec.wait_for(lambda: not broker.healthy)
        finally:
            redis.resume()
        await rec.wait_for(lambda: rec.resyncs >= 2 and broker.healthy, timeout=15)
        await broker.stop()
