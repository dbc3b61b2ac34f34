"""Redis broker: per-tenant partition channels, on a plain Redis or a Redis Cluster.

Every envelope is published once, on its feed's channel (``partitions.channel_of``: the
tenant's channel of the key's partition): ``PUBLISH`` on a plain Redis, ``SPUBLISH`` on
a cluster (sharded pub/sub: the message stays on the master owning the channel's slot;
a partition's channels of every tenant share its slot). There is no pattern
subscription: the listener subscribes to the channels of the feeds the hub holds
(``hold``) and unsubscribes from a channel ``linger`` seconds after its last feed was
released (``release``), so an instance spends nothing on the events of feeds it has no
socket of, and a socket that comes and goes does not churn subscriptions. ``hold`` and
``release`` only count and bump a version number; the listener reconciles what it is
subscribed to with what is wanted.

A plain ``redis://`` URL is asked ``INFO cluster`` when the listener connects; a
cluster node (or ``redis+cluster://``) switches to cluster mode: the slot map comes
from ``CLUSTER SLOTS``, there is one subscriber connection per master (``SSUBSCRIBE``
to the wanted partitions whose slot it serves), publishes are pipelined per master,
and a changed slot map (checked every ``check_interval``), a ``MOVED``, an unasked
``sunsubscribe`` (the slot moved away) or a master lost makes the listener start over
from a fresh slot map.

The listener reconnects with exponential backoff and jitter and calls ``on_resync``
after every (re)connect and after every subscription to more partitions is confirmed,
so the hub catches up from the database on what was published before. Each subscriber connection
proves it is not deaf by publishing a ping to its own channel every ``check_interval``
seconds: a ping not heard back within two intervals forces a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.broker import EnvelopeHandler, ResyncHandler, decode, encode
from server.broker.partitions import (
    PARTITIONS,
    SLOT_OF,
    SLOTS,
    TAGS,
    Channel,
    channel_name,
    channel_of,
    channel_of_key,
    partition_of,
)
from server.changes import Envelope

log = logging.getLogger("taskbell.broker")

PING_PREFIX = "taskbell:ping:"
OUTGOING_LIMIT = 100_000  # envelopes queued for Redis before the oldest are forgotten
LINGER_SECONDS = 30.0  # a channel stays subscribed this long after its last feed left
POLL_SECONDS = 0.05  # how soon a listener notices new interest while nothing arrives
DRAIN_LIMIT = 1000  # messages handled in a row before looking at interest and pings
CLUSTER_SCHEME = "redis+cluster"

Address = tuple[str, int]


class DeafSubscription(Exception):
    """The subscription looks connected but stopped hearing its own pings."""


class TopologyChanged(Exception):
    """The cluster's slot map is not the one the listener subscribed by."""


@dataclass(frozen=True)
class SlotMap:
    """Which master serves each partition (by the slot of the partition's channel)."""

    masters: tuple[Address, ...]
    owner: tuple[int, ...]  # per partition: index into masters

    def master_of(self, partition: int) -> Address:
        return self.masters[self.owner[partition]]


def parse_cluster_slots(reply: Any, seed: Address) -> SlotMap:
    """``CLUSTER SLOTS`` → ``SlotMap``. Raises ``TopologyChanged`` on a slot no master
    serves (the cluster is being set up or resharded)."""
    by_slot: list[Address | None] = [None] * SLOTS
    for entry in reply:
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
        if host in ("", "?"):
            host = seed[0]
        address = (host, int(master[1]))
        for slot in range(start, end + 1):
            by_slot[slot] = address
    masters: list[Address] = []
    owner: list[int] = []
    for p in range(PARTITIONS):
        served = by_slot[SLOT_OF[p]]
        if served is None:
            raise TopologyChanged(f"no master serves partition {p}")
        if served not in masters:
            masters.append(served)
        owner.append(masters.index(served))
    return SlotMap(tuple(masters), tuple(owner))


@dataclass(eq=False)
class _Link:
    """One subscriber connection: the partitions it may serve and what it holds."""

    address: Address | None  # None: the broker's URL (plain Redis)
    partitions: frozenset[int]
    ping_channel: str
    sharded: bool
    subscribed: set[Channel] = field(default_factory=set)
    pending: set[bytes] = field(default_factory=set)  # subscribe not yet confirmed
    leaving: set[bytes] = field(default_factory=set)  # unsubscribe not yet confirmed
    version: int = -1
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class RedisBroker:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        check_interval: float = 5.0,
        linger: float = LINGER_SECONDS,
    ) -> None:
        parts = urlsplit(url)
        self._force_cluster = parts.scheme == CLUSTER_SCHEME
        if self._force_cluster:
            parts = parts._replace(scheme="redis")
        self._url = urlunsplit(parts)
        self._seed: Address = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self._check_interval = check_interval
        self._linger = linger
        self._instance = uuid.uuid4().hex[:12]
        self._on_envelope: EnvelopeHandler = lambda env: None
        self._on_resync: ResyncHandler = lambda: None
        self._listening = False
        self._failing: set[Address | None] = set()  # where the last publish or ping failed
        self.reconnects = 0
        self.dropped = 0
        self.cluster: bool | None = None  # known after the first connection
        self._slots: SlotMap | None = None  # cluster mode: the current slot map
        self._slots_stale = False
        self._clients: dict[Address | None, Redis] = {}  # publishing, per master
        self._outgoing: deque[Envelope] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        # Interest: feeds held per channel, and channels lingering after their last.
        self._refs: dict[Channel, int] = {}
        self._lingering: dict[Channel, float] = {}
        self._version = 0
        self._links: list[_Link] = []

    # ---------------------------------------------------------------- lifecycle

    async def start(self, on_envelope: EnvelopeHandler, on_resync: ResyncHandler) -> None:
        self._on_envelope = on_envelope
        self._on_resync = on_resync
        self._task = asyncio.create_task(self._listen_forever(), name="redis-listener")
        self._publisher = asyncio.create_task(self._publish_forever(), name="redis-publisher")

    async def stop(self) -> None:
        if self._publisher is not None:
            # Give what is queued a moment to leave, then stop.
            for _ in range(20):
                if not self._outgoing or self._failing:
                    break
                await asyncio.sleep(0.05)
            await self._cancel(self._publisher)
            self._publisher = None
        if self._task is not None:
            await self._cancel(self._task)
            self._task = None
        await self._close_clients()

    @staticmethod
    async def _cancel(task: asyncio.Task[None]) -> None:
        """Cancel and wait a bounded time: shutting down must not hang on a client
        stuck in a connect."""
        task.cancel()
        await asyncio.wait({task}, timeout=3.0)
        if not task.done():
            log.warning("%s did not stop in time", task.get_name())

    @property
    def healthy(self) -> bool:
        return self._listening and not self._failing

    def describe(self) -> str:
        state = "listening" if self._listening else "disconnected"
        kind = {None: "", False: " plain", True: " cluster"}[self.cluster]
        return f"redis{kind} ({state})"

    def subscribed_channels(self) -> int:
        """How many channels the listener is subscribed to now (for tests, metrics)."""
        return sum(len(link.subscribed) for link in self._links)

    # ---------------------------------------------------------------- interest

    def hold(self, key: str) -> None:
        c = channel_of_key(key)
        n = self._refs[c] = self._refs.get(c, 0) + 1
        if n == 1:
            self._lingering.pop(c, None)
            self._version += 1

    def release(self, key: str) -> None:
        c = channel_of_key(key)
        n = self._refs.get(c, 0)
        if n <= 0:
            return
        if n > 1:
            self._refs[c] = n - 1
            return
        del self._refs[c]
        self._lingering[c] = time.monotonic() + self._linger
        self._version += 1

    def _expire(self, now: float) -> None:
        expired = [p for p, until in self._lingering.items() if until <= now]
        for p in expired:
            del self._lingering[p]
        if expired:
            self._version += 1

    # ---------------------------------------------------------------- publishing

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
            while self._outgoing:
                chunk = [self._outgoing.popleft() for _ in range(min(500, len(self._outgoing)))]
                try:
                    await self._send(chunk)
                except Exception as exc:
                    if not isinstance(exc, (RedisError, OSError, TopologyChanged)):
                        log.exception("redis publish failed unexpectedly")
                    self._slots_stale = True
                    self.dropped += len(chunk)

    def _outcome(self, address: Address | None, ok: bool) -> None:
        """Record a publish's or a ping's outcome; log only when the state changes."""
        was_ok = not self._failing
        if ok:
            self._failing.discard(address)
        else:
            self._failing.add(address)
        if was_ok and self._failing:
            log.warning("redis publish failed; peers will catch up from the database")
        elif not was_ok and not self._failing:
            log.info("redis publish works again")

    async def _send(self, chunk: list[Envelope]) -> None:
        if self.cluster is None:
            await self._detect()
        if not self.cluster:
            try:
                async with self._client(None).pipeline(transaction=False) as pipe:
                    for env in chunk:
                        pipe.publish(channel_of(env.key), encode(env))
                    await pipe.execute()
            except (RedisError, OSError):
                self._outcome(None, False)
                raise
            self._outcome(None, True)
            return
        slots = self._slots
        if slots is None or self._slots_stale:
            slots = await self._fetch_slots()
            self._adopt(slots)
        # Per master, in commit order; masters in parallel (order matters per feed
        # only, and a feed's partition lives on one master).
        per_master: dict[Address, list[Envelope]] = {}
        for env in chunk:
            per_master.setdefault(slots.master_of(partition_of(env.key)), []).append(env)
        await asyncio.gather(*(self._spublish(a, envs) for a, envs in per_master.items()))

    async def _spublish(self, address: Address, envs: list[Envelope]) -> None:
        try:
            async with self._client(address).pipeline(transaction=False) as pipe:
                for env in envs:
                    pipe.execute_command("SPUBLISH", channel_of(env.key), encode(env))
                await pipe.execute()
        except (RedisError, OSError):
            self._outcome(address, False)
            raise
        self._outcome(address, True)

    def _client(self, address: Address | None) -> Redis:
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = self._connect(address)
        return client

    def _connect(self, address: Address | None) -> Redis:
        options: dict[str, Any] = {
            "socket_connect_timeout": 2,
            "socket_timeout": 2,
            "socket_keepalive": True,
            "health_check_interval": 0,
        }
        if address is None:
            return Redis.from_url(self._url, **options)
        # A cluster node: the URL's credentials and TLS, another host and port.
        parts = urlsplit(self._url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@{address[0]}:{address[1]}" if auth else f"{address[0]}:{address[1]}"
        return Redis.from_url(urlunsplit(parts._replace(netloc=netloc, path="")), **options)

    async def _close_clients(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()

    # ---------------------------------------------------------------- cluster discovery

    async def _detect(self) -> None:
        if self._force_cluster:
            self.cluster = True
            return
        info = await self._client(None).info("cluster")
        self.cluster = bool(int(info.get("cluster_enabled", 0)))
        log.info("redis is %s", "a cluster" if self.cluster else "a single server")

    def _adopt(self, slots: SlotMap) -> None:
        """Use this slot map from now on; forget failures of nodes no longer masters."""
        self._slots = slots
        self._slots_stale = False
        self._failing &= set(slots.masters)

    async def _fetch_slots(self) -> SlotMap:
        """The slot map from the first node that answers: the URL's, then known ones."""
        candidates: list[Address] = [self._seed]
        if self._slots is not None:
            candidates += [a for a in self._slots.masters if a != self._seed]
        last: Exception = TopologyChanged("no cluster node answered")
        for address in candidates:
            try:
                reply = await self._client(address).execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER SLOTS"
                )
                return parse_cluster_slots(reply, address)
            except (RedisError, OSError, TopologyChanged) as exc:
                last = exc
        raise last

    # ---------------------------------------------------------------- listening

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                expected = (RedisError, OSError, DeafSubscription, TopologyChanged, TimeoutError)
                if not isinstance(exc, expected):
                    # A bug or a reply we do not understand: say so, and start over.
                    log.exception("redis listener failed; starting over")
                elif self._listening:
                    log.warning("redis listener lost (%s); reconnecting", type(exc).__name__)
                else:
                    log.debug("redis listener could not subscribe: %r", exc)
                self._listening = False
                self._slots_stale = True
                delay = backoff * (0.5 + random.random())
                backoff = min(backoff * 2, 5.0)
                await asyncio.sleep(delay)
                continue
            finally:
                self._listening = False
                self._links = []
            backoff = 0.1

    async def _session(self) -> None:
        """Subscribe every link, announce, and listen until one fails (then all go)."""
        await self._detect()
        links: list[_Link] = []
        if self.cluster:
            slots = await self._fetch_slots()
            self._adopt(slots)
            for i, address in enumerate(slots.masters):
                mine = frozenset(p for p in range(PARTITIONS) if slots.owner[p] == i)
                tag = TAGS[min(mine)]
                ping = f"{PING_PREFIX}{{{tag}}}:{self._instance}"
                links.append(_Link(address, mine, ping, sharded=True))
        else:
            ping = PING_PREFIX + self._instance
            links.append(_Link(None, frozenset(range(PARTITIONS)), ping, sharded=False))
        self._links = links
        tasks = [asyncio.create_task(self._run_link(link)) for link in links]
        tasks.append(asyncio.create_task(self._announce(links)))
        if self.cluster:
            tasks.append(asyncio.create_task(self._watch_slots(slots)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                failure = None if task.cancelled() else task.exception()
                if failure is not None:
                    raise failure
        finally:
            for task in tasks:
                task.cancel()
            # (gather, not a loop of suppressed awaits: our own cancellation must pass)
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _announce(self, links: list[_Link]) -> None:
        """Once every link is subscribed: healthy, and catch up from the database."""
        async with asyncio.timeout(max(2.0, 2 * self._check_interval)):
            for link in links:
                await link.ready.wait()
        self._listening = True
        self.reconnects += 1
        log.info("redis listener subscribed (%d connection(s))", len(links))
        # Anything published while we were away is in the database: catch up now.
        self._on_resync()
        await asyncio.Event().wait()  # live as long as the session

    async def _watch_slots(self, slots: SlotMap) -> None:
        while True:
            await asyncio.sleep(self._check_interval)
            if await self._fetch_slots() != slots:
                raise TopologyChanged("the slot map changed")

    async def _run_link(self, link: _Link) -> None:
        client = self._connect(link.address)
        pinger = self._connect(link.address)  # its own: never queued behind publishes
        pubsub = client.pubsub()
        subscribe: Callable[..., Any] = pubsub.ssubscribe if link.sharded else pubsub.subscribe
        unsubscribe: Callable[..., Any] = (
            pubsub.sunsubscribe if link.sharded else pubsub.unsubscribe
        )
        data_kind = "smessage" if link.sharded else "message"
        ping_channel = link.ping_channel.encode()
        try:
            link.pending.add(ping_channel)
            await subscribe(link.ping_channel)
            last_heard = time.monotonic()
            next_ping = last_heard
            me = asyncio.current_task()
            while True:
                if me is not None and me.cancelling():
                    # redis-py's read timeout can swallow a cancellation that lands as it
                    # expires (it returns "no message"): honour it here.
                    raise asyncio.CancelledError
                now = time.monotonic()
                if self._lingering:
                    self._expire(now)
                if link.version != self._version:
                    link.version = self._version
                    await self._reconcile(link, subscribe, unsubscribe)
                wait = max(0.0, min(POLL_SECONDS, next_ping - now))
                msg = await pubsub.get_message(timeout=wait)
                budget = DRAIN_LIMIT  # then interest and pings get their turn
                while msg is not None:
                    kind = msg["type"]
                    channel = msg["channel"]
                    if kind == data_kind:
                        if channel == ping_channel:
                            last_heard = time.monotonic()
                        else:
                            try:
                                env = decode(msg["data"])
                            except ValueError:
                                log.warning("dropping a malformed envelope on %s", channel)
                            else:
                                self._on_envelope(env)
                    elif kind in ("subscribe", "ssubscribe"):
                        self._confirmed(link, channel)
                    elif kind in ("unsubscribe", "sunsubscribe"):
                        if channel in link.leaving:
                            link.leaving.discard(channel)
                        elif link.sharded:
                            # Not asked for: Redis moved this channel's slot away.
                            raise TopologyChanged("a slot moved")
                    budget -= 1
                    msg = await pubsub.get_message(timeout=0) if budget else None
                now = time.monotonic()
                if now >= next_ping:
                    if now - last_heard > 2 * self._check_interval:
                        raise DeafSubscription("own pings are not coming back")
                    if not link.ready.is_set() and now - last_heard > 2.0:
                        raise DeafSubscription("no subscribe confirmation")
                    next_ping = now + self._check_interval
                    await self._ping(link, pinger)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            for each in (client, pinger):
                with contextlib.suppress(Exception):
                    await each.aclose()

    def _confirmed(self, link: _Link, channel: bytes) -> None:
        if channel not in link.pending:
            return
        link.pending.discard(channel)
        if link.pending:
            return
        if not link.ready.is_set():
            link.ready.set()  # the session's announcement resyncs
        elif self._listening:
            self._on_resync()  # more partitions: what was published before is in the database

    async def _reconcile(
        self, link: _Link, subscribe: Callable[..., Any], unsubscribe: Callable[..., Any]
    ) -> None:
        wanted = {c for c in (*self._refs, *self._lingering) if c[1] in link.partitions}
        more = sorted(wanted - link.subscribed)
        fewer = sorted(link.subscribed - wanted)
        if more:
            channels = [channel_name(*c) for c in more]
            link.pending.update(c.encode() for c in channels)
            link.subscribed.update(more)
            await self._each(link, subscribe, channels)
        if fewer:
            channels = [channel_name(*c) for c in fewer]
            link.leaving.update(c.encode() for c in channels)
            link.subscribed.difference_update(fewer)
            await self._each(link, unsubscribe, channels)

    @staticmethod
    async def _each(link: _Link, command: Callable[..., Any], channels: list[str]) -> None:
        """Plain channels go in one command; sharded ones one each (a sharded
        (un)subscribe takes channels of one slot only)."""
        if not link.sharded:
            await command(*channels)
            return
        for channel in channels:
            await command(channel)

    async def _ping(self, link: _Link, client: Redis) -> None:
        try:
            async with asyncio.timeout(max(1.0, self._check_interval)):
                if link.sharded:
                    await client.execute_command(  # type: ignore[no-untyped-call]
                        "SPUBLISH", link.ping_channel, b"ping"
                    )
                else:
                    await client.publish(link.ping_channel, b"ping")
            self._outcome(link.address, True)
        except (RedisError, OSError):
            self._outcome(link.address, False)
        except TimeoutError:
            raise DeafSubscription("a ping could not be sent in time") from None
