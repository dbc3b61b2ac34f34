"""Redis pub/sub broker: one supervised listener per process.

Publishes each envelope on its owner's channel (``taskbell:feed:<owner>``) and listens
with one pattern subscription. The listener reconnects with exponential backoff and
jitter, calls ``on_resync`` after every (re)connect so the hub catches up from the
database, and proves it is not deaf by publishing a ping to its own channel every
``check_interval`` seconds: a ping not heard back within two intervals forces a
reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.broker import EnvelopeHandler, ResyncHandler, decode, encode
from server.changes import Envelope

log = logging.getLogger("taskbell.broker")

PREFIX = "taskbell:feed:"
PING_PREFIX = "taskbell:ping:"
OUTGOING_LIMIT = 100_000  # envelopes queued for Redis before the oldest are forgotten


class DeafSubscription(Exception):
    """The subscription looks connected but stopped hearing its own pings."""


class RedisBroker:
    name = "redis"

    def __init__(self, url: str, *, check_interval: float = 5.0) -> None:
        self._url = url
        self._check_interval = check_interval
        self._instance = uuid.uuid4().hex[:12]
        self._ping_channel = PING_PREFIX + self._instance
        self._pub: Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_envelope: EnvelopeHandler = lambda env: None
        self._on_resync: ResyncHandler = lambda: None
        self._listening = False
        self._publish_ok = True
        self.reconnects = 0
        self._outgoing: deque[Envelope] = deque()
        self._wake = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self.dropped = 0

    async def start(self, on_envelope: EnvelopeHandler, on_resync: ResyncHandler) -> None:
        self._on_envelope = on_envelope
        self._on_resync = on_resync
        self._pub = self._client()
        self._task = asyncio.create_task(self._listen_forever(), name="redis-listener")
        self._publisher = asyncio.create_task(self._publish_forever(), name="redis-publisher")

    def _client(self) -> Redis:
        return Redis.from_url(
            self._url,
            socket_connect_timeout=2,
            socket_timeout=2,
            socket_keepalive=True,
            health_check_interval=0,
        )

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Deliver to this process's sockets now and queue for Redis; never waits on
        Redis (a slow or paused Redis must not hold up the write path)."""
        for env in envelopes:
            self._on_envelope(env)
        if self._publisher is None:
            return
        self._outgoing.extend(envelopes)
        overflow = len(self._outgoing) - OUTGOING_LIMIT
        if overflow > 0:
            # Redis has been unreachable for a while: forget the oldest; peers catch up
            # from the database on their sweep or when Redis comes back.
            for _ in range(overflow):
                self._outgoing.popleft()
            self.dropped += overflow
        self._wake.set()

    async def _publish_forever(self) -> None:
        """One publisher, so envelopes leave in the order they were committed."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._outgoing and self._pub is not None:
                chunk = [self._outgoing.popleft() for _ in range(min(500, len(self._outgoing)))]
                try:
                    async with self._pub.pipeline(transaction=False) as pipe:
                        for env in chunk:
                            pipe.publish(PREFIX + env.owner, encode(env))
                        await pipe.execute()
                    if not self._publish_ok:
                        log.info("redis publish works again")
                    self._publish_ok = True
                except (RedisError, OSError) as exc:
                    if self._publish_ok:
                        log.warning(
                            "redis publish failed (%s); peers will catch up from the database",
                            type(exc).__name__,
                        )
                    self._publish_ok = False
                    self.dropped += len(chunk)

    async def stop(self) -> None:
        if self._publisher is not None:
            # Give what is queued a moment to leave, then stop.
            for _ in range(20):
                if not self._outgoing or not self._publish_ok:
                    break
                await asyncio.sleep(0.05)
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pub is not None:
            await self._pub.aclose()
            self._pub = None

    @property
    def healthy(self) -> bool:
        return self._listening and self._publish_ok

    def describe(self) -> str:
        state = "listening" if self._listening else "disconnected"
        return f"redis ({state})"

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            client = self._client()
            pubsub = client.pubsub()
            try:
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, DeafSubscription, TimeoutError) as exc:
                if self._listening:
                    log.warning("redis listener lost (%s); reconnecting", type(exc).__name__)
                self._listening = False
                delay = backoff * (0.5 + random.random())
                backoff = min(backoff * 2, 5.0)
                await asyncio.sleep(delay)
                continue
            finally:
                self._listening = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            backoff = 0.1

    async def _listen(self, pubsub: Any) -> None:
        await pubsub.psubscribe(PREFIX + "*")
        await pubsub.subscribe(self._ping_channel)
        confirmed = 0
        while confirmed < 2:
            msg = await pubsub.get_message(timeout=2.0)
            if msg is None:
                raise DeafSubscription("no subscribe confirmation")
            if msg["type"] in ("psubscribe", "subscribe"):
                confirmed += 1
        self._listening = True
        self.reconnects += 1
        log.info("redis listener subscribed")
        # Anything published while we were away is in the database: catch up now.
        self._on_resync()
        last_heard = time.monotonic()
        next_ping = last_heard + self._check_interval
        prefix_len = len(PREFIX)
        while True:
            wait = max(0.01, min(1.0, next_ping - time.monotonic()))
            msg = await pubsub.get_message(timeout=wait)
            now = time.monotonic()
            if msg is not None:
                kind = msg["type"]
                if kind == "pmessage":
                    channel = msg["channel"].decode()
                    try:
                        env = decode(channel[prefix_len:], msg["data"])
                    except ValueError:
                        log.warning("dropping a malformed envelope on %s", channel)
                        continue
                    self._on_envelope(env)
                elif kind == "message":
                    last_heard = now
            if now >= next_ping:
                if now - last_heard > 2 * self._check_interval:
                    raise DeafSubscription("own pings are not coming back")
                next_ping = now + self._check_interval
                await self._ping()

    async def _ping(self) -> None:
        if self._pub is None:
            return
        try:
            await self._pub.publish(self._ping_channel, b"ping")
            self._publish_ok = True
        except (RedisError, OSError):
            self._publish_ok = False
