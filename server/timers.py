"""Timers: postponed tasks come back by themselves at their time, tasks past their due
time are flagged overdue (one ``task.updated``), substitutions start and end at their
times, and old feed events are forgotten.

Due tasks are found in the database on every tick (an indexed query on
``(status, postponed_until)``), so a return that fell due while no server was running
fires at the next start, and with several instances the database decides which one
fires it (``FOR UPDATE SKIP LOCKED``, see ``server.writes``). Both are operations the
service runs, like any other write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from server.clock import now_utc
from server.metrics import UNCOUNTED
from server.ops import MarkOverdue, MoveSubstitutions, PruneEvents, ResumeDue
from server.service import Service

log = logging.getLogger("taskbell.timers")

SUBSTITUTION_CHECK_S = 0.5  # substitutions start and end within this of their time


class Timers:
    def __init__(
        self, service: Service, *, interval_s: float = 0.25, retention_s: float = 7 * 86400
    ) -> None:
        self.service = service
        self.interval_s = interval_s
        self.retention_s = retention_s
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.fired = 0
        self.metrics = UNCOUNTED  # the app sets its own

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="timers")

    async def stop(self) -> None:
        """Let a tick in progress finish its transaction, then stop."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 10)
            self._task = None

    async def tick(self) -> int:
        """Fire every due return and flag every task past its due time now; returns how
        many came back or were flagged."""
        total = 0
        for make in (ResumeDue, MarkOverdue):
            while True:
                page = make()
                resumed = await self.service.run(page)
                total += resumed.fired
                if resumed.found < page.limit:
                    break
        self.fired += total
        self.metrics.timers_fired.inc(total)
        return total

    async def move_substitutions(self) -> int:
        """Start and end every substitution whose time has come; returns how many moved."""
        total = 0
        while True:
            page = MoveSubstitutions()
            moved = await self.service.run(page)
            total += moved
            if moved < page.limit:
                return total

    async def _run(self) -> None:
        next_prune = next_move = 0.0
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                await self.tick()
                if loop.time() >= next_move:
                    await self.move_substitutions()
                    next_move = loop.time() + SUBSTITUTION_CHECK_S
                if loop.time() >= next_prune:
                    cutoff = now_utc() - timedelta(seconds=self.retention_s)
                    await self.service.run(PruneEvents(cutoff))
                    next_prune = loop.time() + 3600
            except Exception as exc:  # the database is away: try again next tick
                log.warning("timer tick failed: %s", type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
