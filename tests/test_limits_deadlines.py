"""``guard.Deadlines``: what is watched expires once its time has passed (up to a tick
late), what is forgotten or watched again does not, and no timer runs while nothing is
watched. ``BodyWatch`` tells its own cancellation from anyone else's."""

from __future__ import annotations

import asyncio

from server.guard import BodyWatch, Deadlines, tick_for


def test_the_tick_is_a_tenth_of_the_shortest_timeout_in_bounds() -> None:
    assert tick_for(10.0, 10.0) == 1.0
    assert tick_for(1.0, 10.0) == 0.1
    assert tick_for(0.1) == 0.05
    assert tick_for(0.0, 3.0) == 0.3  # 0: that timeout is off
    assert tick_for(0.0) == 1.0


async def test_a_deadline_expires_once_after_its_time_and_not_before() -> None:
    # When it fired is read from the loop's clock, not inferred from sleeps, which a
    # loaded machine stretches.
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(0.02)
    fired: list[float] = []
    once = asyncio.Event()

    def expire() -> None:
        fired.append(loop.time())
        once.set()

    due = loop.time() + 0.05
    deadlines.watch("a", due, expire, loop)
    await asyncio.wait_for(once.wait(), 5)
    assert len(fired) == 1 and fired[0] >= due
    await asyncio.sleep(0.1)
    assert len(fired) == 1 and len(deadlines) == 0


async def test_a_forgotten_or_rewatched_deadline_does_not_fire() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(0.01)
    fired: list[str] = []
    deadlines.watch("gone", loop.time() + 0.02, lambda: fired.append("gone"), loop)
    deadlines.watch("moved", loop.time() + 0.02, lambda: fired.append("early"), loop)
    deadlines.forget("gone")
    deadlines.watch("moved", loop.time() + 10, lambda: fired.append("late"), loop)
    await asyncio.sleep(0.06)
    assert fired == []
    deadlines.forget("moved")


async def test_no_timer_runs_while_nothing_is_watched() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(0.01)
    deadlines.watch("a", loop.time(), lambda: None, loop)
    await asyncio.sleep(0.03)
    assert len(deadlines) == 0 and deadlines._timer is None


async def test_a_body_watch_knows_its_own_cancellation() -> None:
    async def waiting(watch_box: list[BodyWatch]) -> str:
        task = asyncio.current_task()
        assert task is not None
        watch_box.append(BodyWatch(task))
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "timed out" if watch_box[0].timed_out() else "cancelled"
        return "done"

    box: list[BodyWatch] = []
    ours = asyncio.create_task(waiting(box))
    await asyncio.sleep(0)
    box[0].expire()
    assert await ours == "timed out"

    other: list[BodyWatch] = []
    theirs = asyncio.create_task(waiting(other))
    await asyncio.sleep(0)
    theirs.cancel()
    assert await theirs == "cancelled"
