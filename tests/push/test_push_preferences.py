"""Web Push obeys the person's preferences (docs/protocol.md, "Notification preferences"),
end to end against the local push endpoint that decrypts every payload: a switched-off
channel, a muted process and quiet hours queue nothing (counted in
``taskbell_notifications_suppressed_total``), urgent tasks ring through quiet hours, and a
retraction still goes out.

"Nothing was pushed" is shown by order, not by waiting: pushes to one subscription go
out in queue order, so when a later, allowed push is the first to arrive, the silenced
one was never queued."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from tests.push.receiver import Receiver
from tests.push.test_webpush import Browser, push_service, pushing, subscribe
from tests.support.app import Live
from tests.support.tasks import task_body

__all__ = ["push_service", "pushing"]  # the fixtures, shared with test_webpush

ME = "/api/v1/me/preferences"


def quiet_now() -> dict[str, str]:
    """Quiet hours around this very moment, in UTC: from an hour ago to two hours on."""
    hour = datetime.now(UTC).hour
    return {"start": f"{(hour - 1) % 24:02d}:00", "end": f"{(hour + 2) % 24:02d}:00", "tz": "UTC"}


async def prefer(live: Live, user: str, body: dict[str, Any]) -> None:
    async with live.person(user) as c:
        resp = await c.put(ME, json=body)
    assert resp.status_code == 200, resp.text


async def pushed_ids(service: Receiver, browser: Browser, n: int) -> list[tuple[str, str]]:
    await service.wait(lambda: len(service.requests) >= n)
    return [(p["type"], p["task"]["id"]) for p in map(browser.decrypt, service.requests)]


async def suppressed(live: Live) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=live.base_url) as c:
        text = (await c.get("/metrics")).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("taskbell_notifications_suppressed_total{"):
            labels, _, value = line.partition("} ")
            out[labels.split('reason="')[1].rstrip('"')] = float(value)
    return out


async def test_push_switched_off_queues_nothing_until_switched_on(
    pushing: Live, push_service: Receiver
) -> None:
    browser = Browser.new(push_service.base() + "/push/alice-1")
    await subscribe(pushing, "alice", browser)
    await prefer(pushing, "alice", {"channels": {"desktop": True, "push": False}})
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("silent", "alice"))
        await prefer(pushing, "alice", {})
        await c.post("/api/v1/tasks", json=task_body("heard", "alice"))
    assert (await pushed_ids(push_service, browser, 1))[0] == ("task.added", "heard")
    assert (await suppressed(pushing)).get("channel_off") == 1.0


async def test_a_muted_process_is_not_pushed_and_others_are(
    pushing: Live, push_service: Receiver
) -> None:
    browser = Browser.new(push_service.base() + "/push/alice-1")
    await subscribe(pushing, "alice", browser)
    await prefer(pushing, "alice", {"muted_processes": ["Invoice approval"]})
    leave = {"instance_id": "p-leave", "name": "Leave request"}
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("muted", "alice", priority="urgent"))
        await c.post("/api/v1/tasks", json=task_body("leave", "alice", process=leave))
    assert (await pushed_ids(push_service, browser, 1))[0] == ("task.added", "leave")
    assert (await suppressed(pushing)).get("muted") == 1.0


async def test_quiet_hours_silence_pushes_but_urgent_ones_ring_through(
    pushing: Live, push_service: Receiver
) -> None:
    browser = Browser.new(push_service.base() + "/push/alice-1")
    await subscribe(pushing, "alice", browser)
    await prefer(pushing, "alice", {"quiet_hours": quiet_now()})
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("night", "alice", priority="high"))
        await c.patch("/api/v1/tasks/night", json={"title": "Still night"})
        await c.post("/api/v1/tasks", json=task_body("fire", "alice", priority="urgent"))
    assert (await pushed_ids(push_service, browser, 1))[0] == ("task.added", "fire")
    assert (await suppressed(pushing)).get("quiet_hours") == 2.0  # the added and the update


async def test_a_retraction_still_goes_out_in_quiet_hours(
    pushing: Live, push_service: Receiver
) -> None:
    browser = Browser.new(push_service.base() + "/push/alice-1")
    await subscribe(pushing, "alice", browser)
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        await pushed_ids(push_service, browser, 1)
        await prefer(pushing, "alice", {"quiet_hours": quiet_now()})
        await c.post("/api/v1/tasks/t-1/complete")
    assert await pushed_ids(push_service, browser, 2) == [
        ("task.added", "t-1"),
        ("task.removed", "t-1"),
    ]


async def test_another_persons_preferences_do_not_silence_me(
    pushing: Live, push_service: Receiver
) -> None:
    mine = Browser.new(push_service.base() + "/push/alice-1")
    await subscribe(pushing, "alice", mine)
    await prefer(pushing, "bob", {"channels": {"desktop": False, "push": False}})
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
    assert await pushed_ids(push_service, mine, 1) == [("task.added", "t-1")]
