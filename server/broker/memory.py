"""The in-process broker: the embedded default, and the twin used by fast tests."""

from __future__ import annotations

from collections.abc import Sequence

from server.broker import EnvelopeHandler, ResyncHandler
from server.changes import Envelope


class MemoryBroker:
    name = "memory"

    def __init__(self) -> None:
        self._handlers: list[EnvelopeHandler] = []

    async def start(self, on_envelope: EnvelopeHandler, on_resync: ResyncHandler) -> None:
        self._handlers.append(on_envelope)

    def hold(self, key: str) -> None:
        """Every envelope reaches every handler: interest changes nothing here."""

    def release(self, key: str) -> None:
        pass

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        for env in envelopes:
            for handler in self._handlers:
                handler(env)

    async def stop(self) -> None:
        self._handlers.clear()

    @property
    def healthy(self) -> bool:
        return True

    def describe(self) -> str:
        return "in-process"
