"""The fan-out broker: how one process tells every process that a feed changed.

It is only the fast path: a lost publish costs latency, never data, because the hub
fills gaps from ``feed_event`` (see hub.py). Two implementations share this interface:
``MemoryBroker`` (one process, the embedded default) and ``RedisBroker`` (pub/sub on a
plain Redis or sharded pub/sub on a Redis Cluster, any number of processes).

Feed keys (``<tenant>/<feed>``, ``server.feeds``) hash into ``partitions.PARTITIONS``
partitions; each tenant has one channel per partition. The hub tells the broker which
feeds it holds (``hold`` when a feed's state is created, ``release`` when it is
forgotten), and a broker that can listens only to the channels of those feeds: an
instance spends nothing on the events of feeds it holds no socket of.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from server.changes import Envelope

EnvelopeHandler = Callable[[Envelope], None]
ResyncHandler = Callable[[], None]


class Interest(Protocol):
    """What the hub tells the broker. Both calls return at once and never fail."""

    def hold(self, key: str) -> None:
        """This process now has state (a socket, or one joining) for feed ``key``."""
        ...

    def release(self, key: str) -> None:
        """This process forgot feed ``key`` (its last follower left)."""
        ...


class NoInterest:
    """For a hub without a broker (unit tests)."""

    def hold(self, key: str) -> None:
        pass

    def release(self, key: str) -> None:
        pass


class Broker(Interest, Protocol):
    """Publishes envelopes and hands every received one to ``on_envelope``.

    ``on_envelope`` and ``on_resync`` are plain callbacks that must not block: the
    listener never awaits a socket send. ``on_resync`` is called after (re)connecting
    and after subscribing to more partitions, when envelopes may have been missed.
    Envelopes of feeds not held may arrive too (a feed sharing a channel with a held
    one): the hub drops them.
    """

    name: str

    async def start(self, on_envelope: EnvelopeHandler, on_resync: ResyncHandler) -> None: ...

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Never raises for a broker outage: the database already holds the change."""
        ...

    async def stop(self) -> None: ...

    @property
    def healthy(self) -> bool: ...

    def describe(self) -> str: ...


def encode(env: Envelope) -> bytes:
    """``seq\\ncount postponed\\nkey-length\\n`` then the feed key and the message, each
    UTF-8.

    A channel carries many feeds, so the envelope carries the key; the message is the
    one encoded at commit, copied once. The counts line of an instance from before the
    postponed count (``count`` alone) still decodes, as postponed 0 (that instance's
    messages carry no ``counts`` either)."""
    key = env.key.encode()
    return b"%d\n%d %d\n%d\n%s%s" % (
        env.seq,
        env.count,
        env.postponed,
        len(key),
        key,
        env.message.encode(),
    )


def decode(payload: bytes) -> Envelope:
    """The inverse of ``encode``; raises ``ValueError`` on anything else."""
    seq, counts, size, rest = payload.split(b"\n", 3)
    count, _, postponed = counts.partition(b" ")
    n = int(size)
    if n < 0 or n > len(rest):
        raise ValueError("key length out of range")
    return Envelope(
        rest[:n].decode(), int(seq), int(count), rest[n:].decode(), int(postponed or b"0")
    )
