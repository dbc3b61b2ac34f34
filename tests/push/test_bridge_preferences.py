"""The desktop bridge obeys the person's preferences (docs/protocol.md, "Notification
preferences"), against a real session D-Bus with the recording notification service:
read before it connects and again while connected, it raises nothing for the desktop
channel switched off, a muted process or quiet hours (urgent tasks ring through).

"Nothing was raised" is shown by order, not by waiting: the bridge applies feed events
in seq order, so when a later, allowed task is the first notification, the silenced one
was never raised."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.push.desktop import Notifications, SessionBus
from tests.push.test_bridge import bridge_for, bus, desktop, until
from tests.support.app import Live
from tests.support.tasks import task_body

__all__ = ["bus", "desktop"]  # the fixtures, shared with test_bridge

ME = "/api/v1/me/preferences"
LEAVE = {"instance_id": "p-leave", "name": "Leave request"}


def quiet_now() -> dict[str, str]:
    """Quiet hours around this very moment, in UTC: from an hour ago to two hours on."""
    hour = datetime.now(UTC).hour
    return {"start": f"{(hour - 1) % 24:02d}:00", "end": f"{(hour + 2) % 24:02d}:00", "tz": "UTC"}


async def prefer(live: Live, body: dict[str, Any], user: str = "alice") -> None:
    async with live.person(user) as c:
        resp = await c.put(ME, json=body)
    assert resp.status_code == 200, resp.text


def summaries(desktop: Notifications) -> list[str]:
    return [n.summary for n in desktop.notified]


async def test_desktop_switched_off_raises_nothing_until_switched_on(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    await prefer(embedded, {"channels": {"desktop": False, "push": True}})
    bridge = bridge_for(bus, embedded.base_url, tmp_path)
    bridge.argv += ["--preferences-seconds", "0.2"]
    bridge.start()
    try:
        await until(lambda: embedded.parts.hub.connection_count == 1)
        async with embedded.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("silent", "alice", priority="urgent"))
        await prefer(embedded, {})
        # The change reaches the running bridge by its next read of the preferences.
        await until(lambda: bridge.log_text().count("preferences changed") >= 2)
        async with embedded.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("heard", "alice"))
        await desktop.wait(lambda: len(desktop.notified) >= 1)
        assert summaries(desktop)[0] == "Approve heard", bridge.log_text()
    finally:
        await bridge.stop()


async def test_a_muted_process_is_not_raised_and_others_are(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    await prefer(embedded, {"muted_processes": ["Invoice approval"]})
    bridge = bridge_for(bus, embedded.base_url, tmp_path)
    bridge.start()
    try:
        await until(lambda: embedded.parts.hub.connection_count == 1)
        async with embedded.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("muted", "alice", priority="urgent"))
            await c.post("/api/v1/tasks", json=task_body("leave", "alice", process=LEAVE))
        await desktop.wait(lambda: len(desktop.notified) >= 1)
        assert summaries(desktop)[0] == "Approve leave", bridge.log_text()
    finally:
        await bridge.stop()


async def test_quiet_hours_silence_the_desktop_but_urgent_tasks_ring_through(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    await prefer(embedded, {"quiet_hours": quiet_now()})
    bridge = bridge_for(bus, embedded.base_url, tmp_path)
    bridge.start()
    try:
        await until(lambda: embedded.parts.hub.connection_count == 1)
        async with embedded.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("night", "alice", priority="high"))
            await c.post("/api/v1/tasks", json=task_body("fire", "alice", priority="urgent"))
        await desktop.wait(lambda: len(desktop.notified) >= 1)
        assert summaries(desktop)[0] == "Approve fire", bridge.log_text()
    finally:
        await bridge.stop()


async def test_a_silenced_next_step_closes_the_finished_steps_notification(
    embedded: Live, bus: SessionBus, desktop: Notifications, tmp_path: Path
) -> None:
    bridge = bridge_for(bus, embedded.base_url, tmp_path, handoff_s=600.0)
    bridge.argv += ["--preferences-seconds", "0.2"]
    bridge.start()
    try:
        await until(lambda: embedded.parts.hub.connection_count == 1)
        async with embedded.producer() as c:
            made = await c.post(
                "/api/v1/processes", json={"id": "p-x", "name": "Onboarding", "expect_more": True}
            )
            assert made.status_code == 201, made.text
            step = task_body("s-1", "alice", process={"instance_id": "p-x", "name": "Onboarding"})
            await c.post("/api/v1/tasks", json=step)
        await desktop.wait(lambda: len(desktop.notified) == 1)
        first = desktop.notified[0].id
        await prefer(embedded, {"muted_processes": ["Onboarding"]})
        await until(lambda: "preferences changed" in bridge.log_text())
        async with embedded.person("alice") as c:
            assert (await c.post("/api/v1/tasks/s-1/complete")).status_code == 200
        async with embedded.producer() as c:
            step2 = {**step, "id": "s-2", "title": "Step two", "follows": "s-1"}
            assert (await c.post("/api/v1/tasks", json=step2)).status_code == 201
        # The hand-off window is ten minutes here: only the silenced next step closes it.
        await desktop.wait(lambda: desktop.closed == [first])
        assert len(desktop.notified) == 1, bridge.log_text()
    finally:
        await bridge.stop()
