"""``Poller``: one read of the database every few seconds, owned by whoever needs it
(revocations, audience changes). A round the database refuses is logged and the next
round tries again; ``stop`` lets a round in progress finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from server.db import DATABASE_ERRORS


class Poller:
    def __init__(self, name: str, step: Callable[[], Awaitable[object]], interval_s: float) -> None:
        self.name = name
        self.step = step
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._log = logging.getLogger(f"taskbell.{name}")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5.0)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
            if self._stopping.is_set():
                return
            try:
                await self.step()
            except DATABASE_ERRORS as exc:  # the database is away: the next round
                self._log.warning("%s poll failed: %s", self.name, type(exc).__name__)
