"""One task from creation to completion, seen on all four channels at once: two open
panels (WebSocket), the desktop bridge (D-Bus), Web Push and a webhook. One completion
retracts it everywhere and emits exactly one webhook."""

from __future__ import annotations

from pathlib import Path

import orjson
from standardwebhooks.webhooks import Webhook

from tests.push.conftest import register
from tests.push.desktop import notification_service, session_bus
from tests.push.receiver import Receiver, running
from tests.push.test_bridge import bridge_for, until
from tests.push.test_webpush import Browser, subscribe, vapid_settings
from tests.support.app import make_settings, serve, token
from tests.support.client import FeedClient
from tests.support.tasks import task_body


async def test_one_completion_retracts_the_task_on_every_channel(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = vapid_settings(make_settings(sqlite_url))
    with session_bus() as bus:
        async with (
            notification_service(bus) as desktop,
            running(Receiver()) as engine,
            running(Receiver()) as push_service,
            serve(settings) as live,
            FeedClient(live.ws_url, token("alice")) as tab1,
            FeedClient(live.ws_url, token("alice")) as tab2,
        ):
            hook = await register(live, engine.url)
            browser = Browser.new(push_service.base() + "/push/alice")
            await subscribe(live, "alice", browser)
            bridge = bridge_for(bus, live.base_url, tmp_path)
            bridge.start()
            try:
                await tab1.connect()
                await tab2.connect()
                await until(lambda: live.parts.hub.connection_count == 3)

                # created: on both panels, the desktop, the lock screen, the engine
                async with live.producer() as c:
                    await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
                await tab1.until_seq(1)
                await tab2.until_seq(1)
                assert set(tab1.tasks) == set(tab2.tasks) == {"t-1"}
                await desktop.wait(lambda: len(desktop.notified) == 1)
                await push_service.wait(lambda: len(push_service.requests) == 1)
                assert browser.decrypt(push_service.requests[0])["type"] == "task.added"
                await engine.wait(lambda: len(engine.requests) == 1)

                # one completion by the owner, from the panel
                async with live.person("alice") as c:
                    assert (await c.post("/api/v1/tasks/t-1/complete")).status_code == 200
                await tab1.until_seq(2)
                await tab2.until_seq(2)
                assert tab1.tasks == tab2.tasks == {} and tab1.count == tab2.count == 0
                await desktop.wait(lambda: desktop.closed == [desktop.notified[0].id])
                await push_service.wait(lambda: len(push_service.requests) == 2)
                retraction = browser.decrypt(push_service.requests[1])
                assert retraction["type"] == "task.removed"
                assert retraction["task"] == {
                    **retraction["task"],
                    "id": "t-1",
                    "status": "completed",
                }
                await engine.wait(lambda: len(engine.requests) == 2)
                # A last task: each channel delivers in order, so anything more about
                # t-1 would have arrived before this one's notification.
                async with live.producer() as c:
                    await c.post("/api/v1/tasks", json=task_body("t-2", "alice"))
                await desktop.wait(lambda: len(desktop.notified) == 2)
                await push_service.wait(lambda: len(push_service.requests) == 3)
                await engine.wait(lambda: len(engine.requests) == 3)
            finally:
                await bridge.stop()
    events = [Webhook(hook["secret"]).verify(r.body, r.headers) for r in engine.requests]
    assert [(e["type"], e["data"]["id"], e["data"]["actor"]) for e in events] == [
        ("task.created", "t-1", None),
        ("task.completed", "t-1", "alice"),
        ("task.created", "t-2", None),
    ]
    pushes = [browser.decrypt(r) for r in push_service.requests]
    assert [(m["type"], m["task"]["id"]) for m in pushes] == [
        ("task.added", "t-1"),
        ("task.removed", "t-1"),
        ("task.added", "t-2"),
    ]
    assert [n.summary for n in desktop.notified] == ["Approve t-1", "Approve t-2"]
    assert orjson.loads(engine.requests[1].body)["data"]["status"] == "completed"
