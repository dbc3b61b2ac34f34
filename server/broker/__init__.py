"""The fan-out broker: how one process tells every process that an owner's feed changed.

It is only the fast path: a lost publish costs latency, never data, because the hub
fills gaps from ``feed_event`` (see hub.py). Two implementations share this interface:
``MemoryBroker`` (one process, the embedded default) and ``RedisBroker`` (pub/sub, any
number of processes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from server.changes import Envelope

EnvelopeHandler = Callable[[Envelope], None]
ResyncHandler = Callable[[], None]


class Broker(Protocol):
    """Publishes envelopes and hands every received one to ``on_envelope``.

    ``on_envelope`` and ``on_resync`` are plain callbacks that must not block: the
    listener never awaits a socket send. ``on_resync`` is called after (re)connecting,
    when envelopes may have been missed.
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
    """``seq\\ncount\\nmessage``: the owner travels in the channel name."""
    return b"%d\n%d\n" % (env.seq, env.count) + env.message.encode()


def decode(owner: str, payload: bytes) -> Envelope:
    seq, count, message = payload.split(b"\n", 2)
    return Envelope(owner, int(seq), int(count), message.decode())
