"""One contract for every broker (memory, Redis, Redis Cluster), the partitioning shared
by publishers and subscribers, and Redis's own failure handling."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from redis.asyncio import Redis

from server.broker import Broker, decode, encode
from server.broker.memory import MemoryBroker
from server.broker.partitions import (
    PARTITIONS,
    SLOT_OF,
    SLOTS,
    channel_name,
    channel_of,
    key_slot,
    partition_of,
)
from server.broker.redis import RedisBroker, TopologyChanged, parse_cluster_slots
from server.changes import Envelope
from server.feeds import user_key
from tests.support.services import RedisCluster, RedisServer


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

    def of(self, keys: set[str]) -> list[Envelope]:
        """What arrived for the feeds ``keys``, without ``hold_and_wait``'s late probes."""
        return [e for e in self.envelopes if e.key in keys and e.message != "probe"]

    async def wait_for(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                # broker.healthy changes without a callback: look again now and then
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), 0.05)


def key(user: str, tenant: str = "default") -> str:
    return user_key(tenant, user)


ALICE = key("alice")


async def hold_and_wait(
    publisher: Broker, listener: Broker, rec: Recorder, keys: list[str]
) -> None:
    """``listener`` holds the feeds ``keys``; returns once an envelope published for
    each of them has arrived (the subscription is live), with the recorder emptied."""
    for k in keys:
        listener.hold(k)
    probes = [Envelope(k, 0, 0, "probe") for k in keys]

    def arrived() -> bool:
        got = {env.key for env in rec.envelopes if env.message == "probe"}
        return got >= set(keys)

    async with asyncio.timeout(30):  # a loaded machine subscribes slowly
        while not arrived():
            await publisher.publish(probes)
            with contextlib.suppress(TimeoutError):
                await rec.wait_for(arrived, timeout=0.2)
    rec.envelopes.clear()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as cluster:
        yield cluster


@pytest.fixture(params=["memory", "redis", "cluster"])
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
    if request.param == "redis":
        url = request.getfixturevalue("redis_server").url
    else:
        url = request.getfixturevalue("redis_cluster").url
    publisher, listener = RedisBroker(url), RedisBroker(url)
    await publisher.start(lambda env: None, lambda: None)
    await listener.start(rec.on_envelope, rec.on_resync)
    await rec.wait_for(lambda: listener.healthy)
    yield publisher, listener, rec
    await publisher.stop()
    await listener.stop()


# ------------------------------------------------------------------ encoding, partitions


def test_envelope_round_trips_through_its_encoding() -> None:
    for env in (
        Envelope("t/user:al ice\n", 7, 3, '{"type":"task.added","x":"a\\nb"}'),
        Envelope("acme/role:émile", 1, 0, "ü\n\n"),
        Envelope("", 0, 0, ""),
        Envelope("default/user:alice", 9, 2, "{}", 5),
    ):
        assert decode(encode(env)) == env


def test_an_envelope_of_an_instance_from_before_counts_decodes_as_postponed_0() -> None:
    assert decode(b"4\n2\n18\ndefault/user:alice{}") == Envelope(
        "default/user:alice", 4, 2, "{}", 0
    )


@pytest.mark.parametrize(
    "payload", [b"", b"1\n2", b"1\n2\nx\nabc", b"1\n2\n9\nabc", b"1\n2 x\n0\n"]
)
def test_a_malformed_envelope_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        decode(payload)


def test_feed_keys_hash_into_partitions_by_crc32() -> None:
    # Stable across processes and Python versions (not the salted hash()).
    assert partition_of(ALICE) == zlib.crc32(b"default/user:alice") % PARTITIONS
    counts = Counter(partition_of(key(f"owner-{i}")) for i in range(PARTITIONS * 40))
    assert len(counts) == PARTITIONS
    assert max(counts.values()) < 3 * 40


def test_channels_carry_the_tenant_and_keep_the_partitions_slot() -> None:
    assert channel_of(ALICE) == channel_name("default", partition_of(ALICE))
    assert channel_of(ALICE).startswith("taskbell:feed:default:{")
    p = partition_of(ALICE)
    assert channel_name("acme", p) != channel_name("default", p)
    assert key_slot(channel_name("acme", p)) == key_slot(channel_name("default", p)) == SLOT_OF[p]


def test_partition_channels_spread_evenly_over_the_slots() -> None:
    width = SLOTS // PARTITIONS
    assert len({channel_name("default", p) for p in range(PARTITIONS)}) == PARTITIONS
    assert all(p * width <= slot < (p + 1) * width for p, slot in enumerate(SLOT_OF))
    assert all(key_slot(channel_name("acme", p)) == SLOT_OF[p] for p in range(PARTITIONS))
    # redis-cli --cluster create splits the slots into equal ranges: three masters get
    # 85 or 86 partitions each.
    per_master = Counter(min(slot * 3 // SLOTS, 2) for slot in SLOT_OF)
    assert sorted(per_master.values()) == [85, 85, 86]


def test_cluster_slots_reply_maps_every_partition_to_its_master() -> None:
    seed = ("10.0.0.1", 7000)
    reply = [
        [0, 5460, [b"10.0.0.1", 7000, b"id-a", {}], [b"10.0.0.4", 7003, b"id-d", {}]],
        [5461, 10922, [b"", 7001, b"id-b", {}]],  # "" = the node that answered
        [10923, 16383, [b"10.0.0.3", 7002, b"id-c", {}]],
    ]
    slots = parse_cluster_slots(reply, seed)
    assert slots.masters == (("10.0.0.1", 7000), ("10.0.0.1", 7001), ("10.0.0.3", 7002))
    assert [slots.owner.count(i) for i in range(3)] == [86, 85, 85]
    assert (
        slots.master_of(partition_of(ALICE))
        == slots.masters[min(SLOT_OF[partition_of(ALICE)] * 3 // SLOTS, 2)]
    )
    with pytest.raises(TopologyChanged):
        parse_cluster_slots(reply[:2], seed)  # slots without a master: being set up


# ------------------------------------------------------------------ the contract


async def test_published_envelopes_of_held_feeds_arrive_in_order(
    pair: tuple[Broker, Broker, Recorder],
) -> None:
    publisher, listener, rec = pair
    keys = [key("owner-0"), key("owner-1"), "acme/role:approvers"]
    await hold_and_wait(publisher, listener, rec, keys)
    sent = [Envelope(keys[i % 3], i, i % 5, f'{{"n":{i}}}') for i in range(1, 51)]
    await publisher.publish(sent[:25])
    await publisher.publish(sent[25:])
    await rec.wait_for(lambda: len(rec.of(set(keys))) >= 50)
    # Per feed in order (on a cluster, feeds on different masters may interleave).
    for k in keys:
        assert rec.of({k}) == [env for env in sent if env.key == k]
    assert listener.healthy


async def test_many_feeds_on_every_partition_arrive(
    pair: tuple[Broker, Broker, Recorder],
) -> None:
    publisher, listener, rec = pair
    # One feed per partition (the first o-N keys that hash there).
    by_partition: dict[int, str] = {}
    i = 0
    while len(by_partition) < PARTITIONS:
        by_partition.setdefault(partition_of(key(f"o{i}")), key(f"o{i}"))
        i += 1
    keys = list(by_partition.values())
    await hold_and_wait(publisher, listener, rec, keys)
    sent = [Envelope(k, 1, 1, "{}") for k in keys]
    await publisher.publish(sent)
    await rec.wait_for(lambda: len(rec.of(set(keys))) >= len(keys))
    assert sorted(rec.of(set(keys)), key=lambda e: e.key) == sorted(sent, key=lambda e: e.key)


# ------------------------------------------------------------------ interest (Redis)


async def channels_and_numpat(client: Redis, sharded: bool) -> tuple[set[str], int]:
    kind = "SHARDCHANNELS" if sharded else "CHANNELS"
    names = await client.execute_command("PUBSUB", kind, "taskbell:feed:*")  # type: ignore[no-untyped-call]
    numpat = await client.execute_command("PUBSUB", "NUMPAT")  # type: ignore[no-untyped-call]
    return {n.decode() for n in names}, int(numpat)


async def test_redis_subscribes_only_to_held_partitions_and_lets_them_go_after_a_while(
    redis_server: RedisServer,
) -> None:
    rec = Recorder()
    publisher = RedisBroker(redis_server.url)
    listener = RedisBroker(redis_server.url, linger=0.5)
    await publisher.start(lambda env: None, lambda: None)
    await listener.start(rec.on_envelope, rec.on_resync)
    client = Redis.from_url(redis_server.url)
    try:
        await rec.wait_for(lambda: listener.healthy)
        resyncs = rec.resyncs
        assert await channels_and_numpat(client, sharded=False) == (set(), 0)
        await hold_and_wait(publisher, listener, rec, [ALICE])
        # The new subscription asked for a catch-up from the database.
        assert rec.resyncs > resyncs
        alice = channel_of(ALICE)
        assert await channels_and_numpat(client, sharded=False) == ({alice}, 0)
        # A feed in a partition nobody holds is not even sent here; nor is one in the
        # same partition of another tenant.
        stranger = next(
            key(f"s{i}") for i in range(1000) if partition_of(key(f"s{i}")) != partition_of(ALICE)
        )
        other_tenant = next(
            key(f"s{i}", "acme")
            for i in range(10_000)
            if partition_of(key(f"s{i}", "acme")) == partition_of(ALICE)
        )
        await publisher.publish(
            [
                Envelope(stranger, 1, 1, "{}"),
                Envelope(other_tenant, 1, 1, "{}"),
                Envelope(ALICE, 1, 1, "{}"),
            ]
        )
        await rec.wait_for(lambda: len(rec.of({ALICE})) >= 1)
        assert {env.key for env in rec.envelopes} == {ALICE}
        # Released: kept for `linger`, then unsubscribed; holding again resubscribes.
        listener.release(ALICE)
        assert await channels_and_numpat(client, sharded=False) == ({alice}, 0)
        async with asyncio.timeout(10):
            while (await channels_and_numpat(client, sharded=False))[0]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # Redis's state: no event to wait on
        assert listener.subscribed_channels() == 0
        await hold_and_wait(publisher, listener, rec, [ALICE])
        assert listener.subscribed_channels() == 1
    finally:
        await client.aclose()
        await publisher.stop()
        await listener.stop()


async def test_redis_reheld_within_the_linger_keeps_its_subscription(
    redis_server: RedisServer,
) -> None:
    rec = Recorder()
    broker = RedisBroker(redis_server.url, linger=60)
    await broker.start(rec.on_envelope, rec.on_resync)
    try:
        await hold_and_wait(broker, broker, rec, [key("bob")])
        broker.release(key("bob"))
        broker.hold(key("bob"))
        broker.release(key("bob"))
        await asyncio.sleep(0.3)
        assert broker.subscribed_channels() == 1
    finally:
        await broker.stop()


async def test_cluster_uses_sharded_channels_and_no_pattern(redis_cluster: RedisCluster) -> None:
    rec = Recorder()
    publisher = RedisBroker(redis_cluster.cluster_url)
    listener = RedisBroker(redis_cluster.url)  # plain URL of a node: detected
    await publisher.start(lambda env: None, lambda: None)
    await listener.start(rec.on_envelope, rec.on_resync)
    clients = [Redis(port=port) for port in redis_cluster.ports]
    try:
        keys = [key(f"owner-{i}", tenant) for i in range(30) for tenant in ("default", "acme")]
        await hold_and_wait(publisher, listener, rec, keys)
        assert listener.cluster and publisher.cluster
        assert "cluster" in listener.describe()
        wanted = {channel_of(k) for k in keys}
        seen: set[str] = set()
        for client in clients:
            channels, numpat = await channels_and_numpat(client, sharded=True)
            assert numpat == 0
            assert not (seen & channels), "each channel lives on one master"
            seen |= channels
            plain, _ = await channels_and_numpat(client, sharded=False)
            assert plain == set()
        assert seen == wanted
        assert redis_cluster.numpat() == [0, 0, 0]
    finally:
        for client in clients:
            await client.aclose()
        await publisher.stop()
        await listener.stop()


# ------------------------------------------------------------------ failures


async def test_redis_listener_reconnects_and_asks_for_a_resync() -> None:
    with RedisServer() as redis:
        redis.start()
        rec = Recorder()
        broker = RedisBroker(redis.url, check_interval=0.3)
        await broker.start(rec.on_envelope, rec.on_resync)
        await rec.wait_for(lambda: rec.resyncs >= 1 and broker.healthy)
        await hold_and_wait(broker, broker, rec, [ALICE])
        await asyncio.to_thread(redis.kill)
        await rec.wait_for(lambda: not broker.healthy)
        before = rec.resyncs
        # Publishing during the outage neither raises nor blocks for long.
        async with asyncio.timeout(5):
            await broker.publish([Envelope(key("a"), 1, 1, "{}")])
        await asyncio.to_thread(redis.start)
        await rec.wait_for(lambda: rec.resyncs > before and broker.healthy, timeout=15)
        # ... and the held partition is subscribed again.
        await hold_and_wait(broker, broker, rec, [])
        rec.envelopes.clear()
        other = RedisBroker(redis.url)
        await other.start(lambda env: None, lambda: None)
        await other.publish([Envelope(ALICE, 2, 1, "{}")])
        await rec.wait_for(lambda: len(rec.of({ALICE})) == 1)
        await other.stop()
        await broker.stop()


async def test_a_deaf_subscription_is_found_and_replaced() -> None:
    with RedisServer() as redis:
        redis.start()
        rec = Recorder()
        broker = RedisBroker(redis.url, check_interval=0.3)
        await broker.start(rec.on_envelope, rec.on_resync)
        await rec.wait_for(lambda: rec.resyncs >= 1 and broker.healthy)
        before = rec.resyncs
        redis.suspend()  # connected, but nothing comes back: own pings go unanswered
        try:
            await rec.wait_for(lambda: not broker.healthy)
        finally:
            redis.resume()
        await rec.wait_for(lambda: rec.resyncs > before and broker.healthy, timeout=15)
        await broker.stop()


async def test_cluster_listener_survives_a_master_killed_and_restarted() -> None:
    with RedisCluster() as cluster:
        rec = Recorder()
        publisher = RedisBroker(cluster.url, check_interval=0.3)
        listener = RedisBroker(cluster.url, check_interval=0.3)
        await publisher.start(lambda env: None, lambda: None)
        await listener.start(rec.on_envelope, rec.on_resync)
        keys = [key(f"owner-{i}") for i in range(30)]
        try:
            await hold_and_wait(publisher, listener, rec, keys)
            before = rec.resyncs
            # The seed node itself: the slot map must come from the others meanwhile.
            await asyncio.to_thread(cluster.nodes[0].kill)
            await rec.wait_for(lambda: not listener.healthy)
            async with asyncio.timeout(5):
                await publisher.publish([Envelope(key("owner-1"), 1, 1, "{}")])
            await asyncio.to_thread(cluster.nodes[0].start)
            await asyncio.to_thread(cluster.wait_ok)
            await rec.wait_for(lambda: rec.resyncs > before and listener.healthy, timeout=30)
            rec.envelopes.clear()
            sent = [Envelope(k, 2, 1, "{}") for k in keys]
            async with asyncio.timeout(20):
                # The publisher may still be finding its way back: publish until heard.
                while len({e.key for e in rec.of(set(keys))}) < len(keys):
                    await publisher.publish(sent)
                    await asyncio.sleep(0.2)
            assert cluster.numpat() == [0, 0, 0]
        finally:
            await publisher.stop()
            await listener.stop()


async def move_slot(ports: list[int], slot: int, source: int, target: int) -> None:
    """Migrate an (empty) slot from node ``source`` to node ``target``, the way
    ``redis-cli --cluster reshard`` does it for one slot without keys."""
    clients = [Redis(port=port) for port in ports]
    try:
        ids = [(await c.execute_command("CLUSTER MYID")).decode() for c in clients]  # type: ignore[no-untyped-call]
        await clients[target].execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source])  # type: ignore[no-untyped-call]
        await clients[source].execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target])  # type: ignore[no-untyped-call]
        for c in clients:
            await c.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target])  # type: ignore[no-untyped-call]
    finally:
        for c in clients:
            await c.aclose()


async def test_cluster_follows_a_slot_that_moved_to_another_master() -> None:
    with RedisCluster() as cluster:
        rec = Recorder()
        publisher = RedisBroker(cluster.url, check_interval=0.5)
        listener = RedisBroker(cluster.url, check_interval=0.5)
        await publisher.start(lambda env: None, lambda: None)
        await listener.start(rec.on_envelope, rec.on_resync)
        try:
            await hold_and_wait(publisher, listener, rec, [ALICE])
            slot = SLOT_OF[partition_of(ALICE)]
            source = min(slot * 3 // SLOTS, 2)
            await move_slot(cluster.ports, slot, source, (source + 1) % 3)
            before = rec.resyncs
            # The listener is told (sunsubscribe) or finds the new slot map; the publisher
            # gets MOVED and asks again. Then alice's envelopes flow once more.
            await rec.wait_for(lambda: rec.resyncs > before and listener.healthy, timeout=20)
            async with asyncio.timeout(20):
                n = 0
                while not rec.of({ALICE}):
                    n += 1
                    await publisher.publish([Envelope(ALICE, n, 1, "{}")])
                    await asyncio.sleep(0.1)
            target = Redis(port=cluster.ports[(source + 1) % 3])
            try:
                channels, numpat = await channels_and_numpat(target, sharded=True)
            finally:
                await target.aclose()
            assert channel_of(ALICE) in channels
            assert numpat == 0
        finally:
            await publisher.stop()
            await listener.stop()
