"""The hub and the store alone, in process: server CPU per join and per change, with
no sockets and no HTTP in front (what ``bench.run`` cannot separate on a busy machine).

    python -m bench.core                        # this tree
    PYTHONPATH=/path/to/other/checkout python bench/core.py   # another tree's server

A fresh SQLite file (migrated), the in-process broker, the real ``Hub`` over
``SqlFeedLog`` and the real ``Service`` over ``Writes``. ``join``: ``--joins``
connections, one after another, each authenticated as one of ``--owners`` people (each
owning ``--tasks`` running tasks) joining with no ``since`` (a snapshot) and then
leaving; ``change``: ``--changes`` single creates, ``--concurrency`` in flight, spread
over the owners, each delivered to ``--sockets-per-owner`` joined connections (a sender
that keeps the messages); with ``--batches``, that many batches of ``--batch`` creates,
one at a time, and how long the loop stalled in the median batch. The figure is process
CPU time (the loop and aiosqlite's threads together) per operation, best of
``--rounds``: CPU time, unlike rates, is little changed by other processes on the
machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file from another checkout: that tree's server
    sys.path.insert(0, str(Path.cwd()))

from server.auth import User
from server.broker.memory import MemoryBroker
from server.db import make_engines
from server.feedlog import SqlFeedLog
from server.hub import Hub
from server.migrate import upgrade
from server.ops import CreateTask
from server.service import Service
from server.wire import TaskCreate
from server.writes import Writes


class Keeper:
    """A sender that keeps what it is sent (a socket that is always writable)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send_text(self, data: str) -> None:
        self.sent += 1

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        return None


async def stalls_during(batch: Callable[[], Awaitable[object]], batches: int) -> list[float]:
    """Run ``batch`` ``batches`` times beside a ticker on the loop: for each, the longest
    gap between two ticks (what any socket would have waited)."""
    worst = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    stalls: list[float] = []
    for _ in range(batches):
        worst = 0.0
        await batch()
        await asyncio.sleep(0)  # (the ticker sees the end of the batch)
        stalls.append(worst)
    done = True
    await tick
    return stalls


def owner(i: int) -> str:
    return f"u{i:05d}"


async def run(args: argparse.Namespace) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="taskbell-core-"))
    url = f"sqlite+aiosqlite:///{work}/bench.db"
    await asyncio.to_thread(upgrade, url)
    engines = make_engines(url)
    broker = MemoryBroker()
    service = Service(Writes(engines), broker)
    hub = Hub(SqlFeedLog(engines), sweep_interval=3600, heartbeat_s=0, interest=broker)
    await broker.start(hub.on_envelope, hub.resync)
    seq = 0

    def create(i: int) -> CreateTask:
        nonlocal seq
        seq += 1
        body = TaskCreate.model_validate(
            {"id": f"t{seq:07d}", "owner": owner(i % args.owners), "title": f"Task {seq}"}
        )
        return CreateTask(body)

    await service.apply([create(i) for i in range(args.owners) for _ in range(args.tasks)])
    best: dict[str, float] = {}
    try:
        for _ in range(args.rounds):
            start = time.process_time()
            for i in range(args.joins):
                who = User(owner(i % args.owners), time.time() + 3600)
                async with hub.session(Keeper(), who, None):
                    pass
            per = (time.process_time() - start) / args.joins * 1000
            best["join ms"] = min(best.get("join ms", per), per)

            sessions: list[Any] = []
            for i in range(args.owners * args.sockets_per_owner):
                s = hub.session(Keeper(), User(owner(i % args.owners), time.time() + 3600), None)
                await s.__aenter__()
                sessions.append(s)
            queue = list(range(args.changes))
            start = time.process_time()

            async def worker(queue: list[int]) -> None:
                while queue:
                    await service.apply_one(create(queue.pop()))

            await asyncio.gather(*(worker(queue) for _ in range(args.concurrency)))
            await asyncio.sleep(0.05)  # let the writers drain
            per = (time.process_time() - start) / args.changes * 1000
            best["change ms"] = min(best.get("change ms", per), per)
            if args.batches:
                # Batches of --batch creates, one at a time, and a ticker on the loop:
                # the longest the loop went without running it is the longest stall any
                # socket would see (the write's Python work and, where the statements
                # run on the loop's thread, its SQLite work).
                start = time.process_time()
                for _ in range(args.batches):
                    await service.apply([create(i) for i in range(args.batch)])
                per = (time.process_time() - start) / (args.batches * args.batch) * 1000
                best["batch ms"] = min(best.get("batch ms", per), per)
                # The same again beside a ticker (not timed for CPU: it spins while the
                # loop is idle).
                stalls = await stalls_during(
                    lambda: service.apply([create(i) for i in range(args.batch)]), args.batches
                )
                stall = sorted(stalls)[len(stalls) // 2] * 1000  # the median batch's
                best["stall ms"] = min(best.get("stall ms", stall), stall)
            for s in sessions:
                await s.__aexit__(None, None, None)
    finally:
        await hub.stop()
        await service.close()
        await broker.stop()
        await engines.dispose()
        shutil.rmtree(work, ignore_errors=True)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__)
    parser.add_argument("--joins", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--owners", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--sockets-per-owner", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500, help="creates per batch")
    parser.add_argument("--batches", type=int, default=0, help="batches to time (0: none)")
    args = parser.parse_args()
    for name, value in asyncio.run(run(args)).items():
        what = "ms loop stall, median batch" if name == "stall ms" else "ms CPU per op"
        print(f"{name:>10}  {value:.3f} {what} (best of {args.rounds})")


if __name__ == "__main__":
    main()
