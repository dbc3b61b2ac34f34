"""Webhooks end to end: signed deliveries, retries, restarts, disabling, the delivery
log, redelivery, and one instance at a time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks.webhooks import Webhook
from starlette.responses import Response

from server.settings import Settings
from tests.push.conftest import eventually, fast, register
from tests.push.receiver import Received, Receiver, ok, running
from tests.support.app import PRODUCER_KEY, SECRET, Live, serve
from tests.support.server_proc import ServerProcess
from tests.support.tasks import task_body


def payload(r: Received) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(r.body)
    return data


def verify(secret: str, r: Received) -> dict[str, Any]:
    """Check the signature with the Standard Webhooks reference library."""
    verified: dict[str, Any] = Webhook(secret).verify(r.body, r.headers)
    return verified


async def test_delivery_is_signed_per_standard_webhooks(hooked: Live, receiver: Receiver) -> None:
    ep = await register(hooked, receiver.url)
    async with hooked.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
    await receiver.wait(lambda: len(receiver.requests) == 1)
    got = receiver.requests[0]
    body = verify(ep["secret"], got)
    assert got.webhook_id.startswith("msg_")
    assert body["type"] == "task.created"
    assert body["data"]["id"] == "t-1" and body["data"]["owner"] == "alice"
    assert body["data"]["actor"] is None
    assert body["timestamp"].endswith("Z")


async def test_owner_completing_from_the_panel_tells_the_engine(
    hooked: Live, receiver: Receiver
) -> None:
    ep = await register(hooked, receiver.url, events=["task.completed", "task.postponed"])
    async with hooked.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        await c.post("/api/v1/tasks", json=task_body("t-2", "alice"))
    async with hooked.person("alice") as c:
        assert (await c.post("/api/v1/tasks/t-1/complete")).status_code == 200
        later = {"until": "2099-01-01T09:00:00Z"}
        assert (await c.post("/api/v1/tasks/t-2/postpone", json=later)).status_code == 200
    await receiver.wait(lambda: len(receiver.requests) == 2)
    events = sorted((verify(ep["secret"], r) for r in receiver.requests), key=lambda e: e["type"])
    assert [(e["type"], e["data"]["id"], e["data"]["actor"]) for e in events] == [
        ("task.completed", "t-1", "alice"),
        ("task.postponed", "t-2", "alice"),
    ]
    assert events[0]["data"]["status"] == "completed"
    assert events[1]["data"]["postponed_until"] == "2099-01-01T09:00:00.000000Z"


def flaky(failures: int) -> Any:
    """Fail the first ``failures`` attempts of every message, then accept."""

    def plan(r: Received, rec: Receiver) -> Response:
        if rec.attempts(r.webhook_id) <= failures:
            return Response("not now", status_code=503)
        return Response(status_code=200)

    return plan


async def test_flaky_receiver_gets_every_event_with_the_same_webhook_id(
    hooked: Live,
) -> None:
    async with running(Receiver(plan=flaky(2))) as receiver:
        ep = await register(hooked, receiver.url)
        async with hooked.producer() as c:
            for i in range(5):
                await c.post("/api/v1/tasks", json=task_body(f"t-{i}", "alice"))
            await c.post("/api/v1/tasks/t-0/complete")
            await c.patch("/api/v1/tasks/t-1", json={"owner": "bob"})

        def ids() -> set[str]:
            return {r.webhook_id for r in receiver.requests}

        await receiver.wait(
            lambda: len(ids()) == 7 and all(receiver.attempts(i) == 3 for i in ids())
        )
    for r in receiver.requests:
        verify(ep["secret"], r)  # every attempt is signed for its own timestamp
    for webhook_id in ids():
        bodies = {r.body for r in receiver.requests if r.webhook_id == webhook_id}
        assert len(bodies) == 1, "a repeat carries the same body"
    types = sorted({payload(r)["type"] for r in receiver.requests})
    assert types == ["task.completed", "task.created", "task.reassigned"]
    reassigned = next(
        payload(r) for r in receiver.requests if payload(r)["type"] == "task.reassigned"
    )
    assert reassigned["data"]["owner"] == "bob" and reassigned["data"]["previous_owner"] == "alice"
    async with hooked.producer() as c:
        log = (await c.get(f"/api/v1/webhooks/{ep['id']}/deliveries")).json()["deliveries"]
    assert len(log) == 7
    assert {d["status"] for d in log} == {"delivered"}
    assert {d["attempts"] for d in log} == {3}


async def test_a_restart_in_the_middle_of_retries_loses_nothing(backend: Settings) -> None:
    settings = fast(backend)
    down = Receiver(plan=lambda r, rec: Response(status_code=500))
    async with running(down) as receiver:
        async with serve(settings) as live:
            await register(live, receiver.url)
            async with live.producer() as c:
                for i in range(4):
                    await c.post("/api/v1/tasks", json=task_body(f"t-{i}", "alice"))
            # every message was tried at least once and is waiting for its next retry
            await receiver.wait(lambda: len({r.webhook_id for r in receiver.requests}) == 4)
        tried = {r.webhook_id for r in receiver.requests}
        assert not receiver.accepted
        receiver.plan = lambda r, rec: Response(status_code=200)
        async with serve(settings):
            await receiver.wait(lambda: receiver.accepted == tried)


async def test_an_endpoint_that_answers_410_is_disabled_and_says_so(hooked: Live) -> None:
    gone = Receiver(plan=lambda r, rec: Response(status_code=410))
    async with running(gone) as receiver:
        ep = await register(hooked, receiver.url)
        async with hooked.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
            await receiver.wait(lambda: len(receiver.requests) == 1)

            async def disabled() -> bool:
                got = (await c.get(f"/api/v1/webhooks/{ep['id']}")).json()
                return got["enabled"] is False

            await eventually(disabled)
            got = (await c.get(f"/api/v1/webhooks/{ep['id']}")).json()
            assert "410" in got["disabled_reason"] and got["disabled_at"]
            # disabled: later changes are not queued, nothing more is sent
            await c.post("/api/v1/tasks", json=task_body("t-2", "alice"))
            log = (await c.get(f"/api/v1/webhooks/{ep['id']}/deliveries")).json()
            assert [d["status"] for d in log["deliveries"]] == ["paused"]
            # re-enabled: the paused delivery goes out again
            receiver.plan = lambda r, rec: Response(status_code=200)
            resp = await c.patch(f"/api/v1/webhooks/{ep['id']}", json={"enabled": True})
            assert resp.json()["enabled"] is True and resp.json()["disabled_reason"] is None
            await receiver.wait(lambda: len(receiver.requests) == 2)
    assert receiver.requests[0].webhook_id == receiver.requests[1].webhook_id


async def test_an_endpoint_that_keeps_failing_is_disabled(backend: Settings) -> None:
    settings = fast(backend, webhook_max_age_s=0.6)
    failing = Receiver(plan=lambda r, rec: Response(status_code=500))
    async with running(failing) as receiver, serve(settings) as live:
        ep = await register(live, receiver.url)
        async with live.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))

            async def disabled() -> bool:
                return (await c.get(f"/api/v1/webhooks/{ep['id']}")).json()["enabled"] is False

            await eventually(disabled)
            got = (await c.get(f"/api/v1/webhooks/{ep['id']}")).json()
    assert got["disabled_reason"].startswith("failing without a success since")
    assert "HTTP 500" in got["disabled_reason"]


async def test_redirects_are_not_followed(hooked: Live) -> None:
    def plan(r: Received, rec: Receiver) -> Response:
        if r.path == "/hook":
            return Response(status_code=307, headers={"Location": rec.base() + "/elsewhere"})
        return Response(status_code=200)

    async with running(Receiver(plan=plan)) as receiver:
        ep = await register(hooked, receiver.url)
        async with hooked.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
            await receiver.wait(lambda: len(receiver.requests) >= 2)
            log = (await c.get(f"/api/v1/webhooks/{ep['id']}/deliveries")).json()["deliveries"]
    assert {r.path for r in receiver.requests} == {"/hook"}
    assert log[0]["status"] == "pending" and log[0]["last_status"] == 307
    assert "not followed" in log[0]["last_error"]


async def test_redelivery_sends_again_with_the_same_webhook_id(
    hooked: Live, receiver: Receiver
) -> None:
    ep = await register(hooked, receiver.url)
    async with hooked.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        await receiver.wait(lambda: len(receiver.requests) == 1)
        first = receiver.requests[0].webhook_id

        async def delivered() -> bool:
            one = (await c.get(f"/api/v1/webhooks/{ep['id']}/deliveries/{first}")).json()
            return bool(one["status"] == "delivered")

        await eventually(delivered)
        resp = await c.post(f"/api/v1/webhooks/{ep['id']}/deliveries/{first}/redeliver")
        assert resp.status_code == 202 and resp.json()["status"] == "pending"
        await receiver.wait(lambda: len(receiver.requests) == 2)
    assert receiver.requests[1].webhook_id == first
    assert verify(ep["secret"], receiver.requests[1])["data"]["id"] == "t-1"


async def test_endpoints_get_only_the_event_types_and_owners_they_asked_for(
    hooked: Live, receiver: Receiver
) -> None:
    await register(hooked, receiver.url, events=["task.completed"], owners=["bob"])
    async with hooked.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("a-1", "alice"))
        await c.post("/api/v1/tasks", json=task_body("b-1", "bob"))
        await c.post("/api/v1/tasks/a-1/complete")
        await c.post("/api/v1/tasks/b-1/complete")
        # A last wanted event: one endpoint's deliveries go out in queue order, so
        # anything queued for it before would have arrived before this one.
        await c.post("/api/v1/tasks", json=task_body("b-2", "bob"))
        await c.post("/api/v1/tasks/b-2/complete")

    def got() -> list[tuple[str, str]]:
        return [(payload(r)["type"], payload(r)["data"]["id"]) for r in receiver.requests]

    await receiver.wait(lambda: ("task.completed", "b-2") in got())
    assert got() == [("task.completed", "b-1"), ("task.completed", "b-2")]


async def test_delivery_log_pages_newest_first(hooked: Live, receiver: Receiver) -> None:
    ep = await register(hooked, receiver.url)
    async with hooked.producer() as c:
        for i in range(5):
            await c.post("/api/v1/tasks", json=task_body(f"t-{i}", "alice"))
        await receiver.wait(lambda: len(receiver.requests) == 5)
        url = f"/api/v1/webhooks/{ep['id']}/deliveries"
        first = (await c.get(url, params={"limit": 3})).json()
        second = (await c.get(url, params={"limit": 3, "cursor": first["next_cursor"]})).json()
    ids = [d["task_id"] for d in first["deliveries"] + second["deliveries"]]
    assert ids == ["t-4", "t-3", "t-2", "t-1", "t-0"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("n_instances", [2])
async def test_each_delivery_is_attempted_by_one_instance_at_a_time(
    postgres_server: Any, redis_server: Any, n_instances: int
) -> None:
    from tests.support.app import make_settings

    settings = fast(make_settings(postgres_server.create_database(), redis_server.url))
    async with running(Receiver()) as receiver, serve(settings) as one, serve(settings):
        ep = await register(one, receiver.url)
        async with one.producer() as c:
            ops = [{"op": "create", "task": task_body(f"t-{i}", f"u{i % 7}")} for i in range(60)]
            assert (await c.post("/api/v1/tasks/batch", json={"ops": ops})).status_code == 200
        await receiver.wait(lambda: len(receiver.accepted) == 60)
        async with one.producer() as c:
            url = f"/api/v1/webhooks/{ep['id']}/deliveries"
            log: list[dict[str, Any]] = []

            async def all_logged_delivered() -> bool:
                log.clear()
                cursor = None
                while True:
                    params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
                    page = (await c.get(url, params=params)).json()
                    log.extend(page["deliveries"])
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                return len(log) == 60 and all(d["status"] == "delivered" for d in log)

            await eventually(all_logged_delivered)
    # Every claim counts an attempt: a row taken by both instances would show two.
    assert [d["attempts"] for d in log] == [1] * 60, "each row was claimed once"
    assert len(receiver.requests) == 60, "no message was sent twice"


@pytest.mark.slow
async def test_a_crash_in_mid_delivery_loses_nothing(pg_url: str) -> None:
    """SIGKILL while a delivery is in flight: its lease runs out and the restarted
    server sends it again (at least once, with the same webhook-id), and logs it as
    delivered."""
    hang = asyncio.Event()

    async def stuck(r: Received, rec: Receiver) -> Response:
        await hang.wait()
        # The server that sent this was killed and never reads the answer: whatever is
        # answered here must not count as a delivery.
        return Response("nobody is listening", status_code=503)

    env = {
        "DATABASE_URL": pg_url,
        "TASKBELL_SECRET": SECRET,
        "TASKBELL_PRODUCER_KEYS": PRODUCER_KEY,
        "TASKBELL_WEBHOOK_ALLOW_PRIVATE": "1",
        "TASKBELL_OUTBOX_POLL_SECONDS": "0.05",
        "TASKBELL_WEBHOOK_RETRY_SECONDS": "0.05",
        "TASKBELL_WEBHOOK_RETRY_CAP_SECONDS": "0.2",
        "TASKBELL_OUTBOX_LEASE_SECONDS": "1",
    }
    server = ServerProcess(env)
    try:
        async with running(Receiver(plan=stuck)) as receiver:
            await asyncio.to_thread(server.start)
            headers = {"Authorization": f"Bearer {PRODUCER_KEY}"}
            async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as c:
                made = await c.post("/api/v1/webhooks", json={"url": receiver.url})
                assert made.status_code == 201
                endpoint = made.json()["id"]
                for i in range(3):
                    await c.post("/api/v1/tasks", json=task_body(f"t-{i}", "alice"))
                # one is being sent (its lease taken): then the server dies
                await receiver.wait(lambda: len(receiver.requests) == 1)
                in_flight = receiver.requests[0].webhook_id
                await asyncio.to_thread(server.kill)
                hang.set()
                receiver.plan = ok
                await asyncio.to_thread(server.start)
                await receiver.wait(lambda: len(receiver.accepted) == 3, timeout=20)
                url = f"/api/v1/webhooks/{endpoint}/deliveries/{in_flight}"
                logged: dict[str, Any] = {}

                async def delivered() -> bool:
                    logged.update((await c.get(url)).json())
                    return bool(logged["status"] == "delivered")

                await eventually(delivered)
        assert in_flight in receiver.accepted
        assert receiver.attempts(in_flight) >= 2, "the in-flight message was sent again"
        assert logged["status"] == "delivered" and logged["attempts"] >= 2, logged
    finally:
        await asyncio.to_thread(server.close)


@pytest.mark.parametrize("status", [429, 503])
async def test_the_next_attempt_waits_as_long_as_retry_after_says(
    backend: Settings, status: int
) -> None:
    # A cap far above Retry-After, so only the receiver's answer can make the wait long.
    settings = fast(backend, webhook_retry_cap_s=30.0)
    seen: list[float] = []

    def plan(r: Received, rec: Receiver) -> Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            return Response("busy", status_code=status, headers={"Retry-After": "2"})
        return Response(status_code=200)

    async with running(Receiver(plan=plan)) as receiver, serve(settings) as live:
        await register(live, receiver.url)
        async with live.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        await receiver.wait(lambda: len(receiver.accepted) == 1)
    assert receiver.attempts(receiver.requests[0].webhook_id) == 2
    assert seen[1] - seen[0] >= 2.0, "retried before Retry-After ran out"
