"""The producer client (``taskbell_client``) against a real server: every call group,
the server's errors as exceptions, retries of 429 and 503, and the webhook verifier
against what the real server signs and sends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskbell_client import (
    NO_RETRY,
    AsyncClient,
    Client,
    Conflict,
    NotFound,
    Op,
    RateLimited,
    Retry,
    Unauthorized,
    Unavailable,
    Unprocessable,
    WebhookVerificationError,
    sign,
    verify_webhook,
)
from taskbell_client.errors import ApiError
from tests.push.conftest import fast
from tests.push.receiver import Receiver, running
from tests.support.app import PRODUCER_KEY, Live, make_settings, serve, token, uvicorn_serving
from tests.support.processes import free_port

PROCESS = {"instance_id": "p-1", "name": "Invoice approval"}


@pytest.fixture
async def client(live: Live) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(live.base_url, PRODUCER_KEY) as c:
        yield c


async def test_tasks_create_patch_postpone_complete_cancel_get(client: AsyncClient) -> None:
    created = await client.create_task("c-1", "alice", "Approve INV-1", process=PROCESS)
    assert created["status"] == "running" and created["process"] == PROCESS
    again = await client.create_task("c-1", "alice", "Approve INV-1", process=PROCESS)
    assert again == created  # an identical repeat is idempotent
    with pytest.raises(Conflict) as conflict:
        await client.create_task("c-1", "alice", "Another title", process=PROCESS)
    assert conflict.value.status == 409 and conflict.value.code and conflict.value.message
    patched = await client.patch_task("c-1", title="Approve INV-1 (urgent)", owner="bob")
    assert (patched["title"], patched["owner"]) == ("Approve INV-1 (urgent)", "bob")
    later = datetime.now(UTC) + timedelta(days=1)
    postponed = await client.postpone_task("c-1", later)
    assert postponed["status"] == "postponed" and postponed["postponed_until"]
    assert (await client.resume_task("c-1"))["status"] == "running"
    assert (await client.complete_task("c-1"))["status"] == "completed"
    await client.create_task("c-2", "alice", "Send the proposal", kind="email")
    assert (await client.cancel_task("c-2"))["status"] == "canceled"
    assert (await client.get_task("c-2"))["kind"] == "email"
    with pytest.raises(NotFound) as missing:
        await client.get_task("no-such-task")
    assert missing.value.code == "task_not_found"
    with pytest.raises(Unprocessable) as bad:
        await client.create_task("c-3", "alice", "   ")
    assert bad.value.code == "invalid" and bad.value.details


async def test_batch_with_the_op_helpers(client: AsyncClient) -> None:
    out = await client.batch(
        [
            Op.create("b-1", "alice", "One"),
            Op.create("b-2", "alice", "Two"),
            Op.update("b-1", title="One, renamed"),
            Op.postpone("b-2", datetime.now(UTC) + timedelta(hours=1)),
            Op.complete("b-1"),
            Op.cancel("nope"),
        ]
    )
    statuses = [r["status"] for r in out["results"]]
    assert statuses == [201, 201, 200, 200, 200, 404]
    assert out["results"][4]["task"]["title"] == "One, renamed"
    assert out["results"][5]["error"]["code"] == "task_not_found"


async def test_processes_with_the_blocking_client(embedded: Live) -> None:
    def work() -> None:
        with Client(embedded.base_url, PRODUCER_KEY) as tb:
            started = tb.create_process("p-9", "Onboarding", expect_more=True)
            assert started["status"] == "running"
            assert tb.create_process("p-9", "Onboarding", expect_more=True)["id"] == "p-9"
            tb.create_task(
                "s-1", "alice", "Call Acme", process={"instance_id": "p-9", "name": "Onboarding"}
            )
            tb.create_task(
                "s-2", "bob", "Mail Acme", process={"instance_id": "p-9", "name": "Onboarding"}
            )
            got = tb.get_process("p-9")
            assert [s["id"] for s in got["steps"]] == ["s-1", "s-2"]
            assert tb.patch_process("p-9", expect_more=False)["expect_more"] is False
            ended = tb.cancel_process("p-9", reason="customer left")
            assert ended["status"] == "canceled" and ended["canceled_steps"] == 2
            tb.create_process("p-10", "Onboarding")
            assert tb.complete_process("p-10")["status"] == "completed"
            tb.create_process("p-11", "Onboarding")
            assert tb.fail_process("p-11")["status"] == "error"
            stats = tb.process_stats(
                name="Onboarding", since=datetime.now(UTC) - timedelta(hours=1)
            )
            assert [p["name"] for p in stats["processes"]] == ["Onboarding"]
            assert tb.disable_process("Onboarding") == {"name": "Onboarding", "disabled": True}
            names = {d["name"]: d["disabled"] for d in tb.process_definitions()["processes"]}
            assert names["Onboarding"] is True
            assert tb.enable_process("Onboarding")["disabled"] is False
            with pytest.raises(NotFound):
                tb.get_process("p-missing")

    await asyncio.to_thread(work)


async def test_revoking_a_user(embedded: Live) -> None:
    alice = token("alice")
    async with AsyncClient(embedded.base_url, PRODUCER_KEY) as tb:
        assert (await tb.revoke_user("alice"))["user"] == "alice"
    async with httpx.AsyncClient(base_url=embedded.base_url) as http:
        refused = await http.get("/api/v1/me/counter", headers={"Authorization": f"Bearer {alice}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_revoked"
    async with AsyncClient(embedded.base_url, "not-a-key") as wrong:
        with pytest.raises(Unauthorized):
            await wrong.get_task("x")


async def test_webhooks_and_the_verifier_against_real_deliveries(sqlite_url: str) -> None:
    async with (
        running(Receiver()) as receiver,
        serve(fast(make_settings(sqlite_url))) as live,
        AsyncClient(live.base_url, PRODUCER_KEY) as tb,
    ):
        ep = await tb.create_webhook(receiver.url, events=["task.created"], description="engine")
        secret = ep["secret"]
        assert secret.startswith("whsec_") and ep["enabled"] is True
        assert [e["id"] for e in (await tb.list_webhooks())["endpoints"]] == [ep["id"]]
        assert "secret" not in await tb.get_webhook(ep["id"])
        patched = await tb.patch_webhook(ep["id"], description="the engine")
        assert patched["description"] == "the engine"
        await tb.create_task("w-1", "alice", "Hooked")
        await receiver.wait(lambda: len(receiver.requests) == 1)
        got = receiver.requests[0]
        event = verify_webhook(secret, got.headers, got.body)
        assert event["type"] == "task.created" and event["data"]["id"] == "w-1"
        # Anything else is refused: another body, another secret, an old delivery.
        with pytest.raises(WebhookVerificationError):
            verify_webhook(secret, got.headers, got.body.replace(b"w-1", b"w-2"))
        other = "whsec_" + "A" * 32
        with pytest.raises(WebhookVerificationError):
            verify_webhook(other, got.headers, got.body)
        with pytest.raises(WebhookVerificationError):
            verify_webhook(secret, got.headers, got.body, now=time.time() + 3600)
        missing = {k: v for k, v in got.headers.items() if k != "webhook-signature"}
        with pytest.raises(WebhookVerificationError):
            verify_webhook(secret, missing, got.body)
        # The delivery log, one delivery, and a redelivery with the same webhook-id.
        page = await tb.list_deliveries(ep["id"], status="delivered", limit=10)
        (delivery,) = page["deliveries"]
        assert delivery["id"] == got.webhook_id
        assert (await tb.get_delivery(ep["id"], delivery["id"]))["status"] == "delivered"
        await tb.redeliver(ep["id"], delivery["id"])
        await receiver.wait(lambda: len(receiver.requests) == 2)
        again = receiver.requests[1]
        assert again.webhook_id == got.webhook_id
        assert verify_webhook(secret, again.headers, again.body) == event
        assert await tb.delete_webhook(ep["id"]) == {}
        with pytest.raises(NotFound):
            await tb.get_webhook(ep["id"])


def test_signatures_match_the_standard_webhooks_library() -> None:
    from standardwebhooks.webhooks import Webhook

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    stamp = int(time.time())
    body = b'{"type": "task.created"}'
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp)}
    headers["webhook-signature"] = sign(secret, "msg_1", stamp, body)
    assert Webhook(secret).verify(body, headers) == {"type": "task.created"}
    # Several signatures (a secret being rotated): any one that matches will do.
    headers["Webhook-Signature"] = "v1,bm9wZQ== " + headers.pop("webhook-signature")
    assert verify_webhook(secret, headers, body) == {"type": "task.created"}


async def test_429s_from_a_real_rate_limit_are_retried_after_retry_after(
    sqlite_url: str,
) -> None:
    async with serve(make_settings(sqlite_url, rate_producer=1.0)) as live:
        async with AsyncClient(live.base_url, PRODUCER_KEY, retry=NO_RETRY) as once:
            with pytest.raises(RateLimited) as refused:
                for i in range(5):
                    await once.create_task(f"r-{i}", "alice", "Rate")
        assert refused.value.code == "rate_limited" and refused.value.retry_after
        assert refused.value.retry_after >= 1
        started = time.monotonic()
        async with AsyncClient(live.base_url, PRODUCER_KEY, retry=Retry(attempts=5)) as tb:
            for i in range(3):
                await tb.create_task(f"ok-{i}", "alice", "Rate")
        assert time.monotonic() - started >= 1.0  # it waited as the server said
        async with httpx.AsyncClient(base_url=live.base_url) as http:
            metrics = (await http.get("/metrics")).text
        line = next(x for x in metrics.splitlines() if x.startswith("taskbell_rate_limited_total"))
        assert float(line.split()[-1]) >= 2


class Flaky:
    """A real server that answers 503 ``database_unavailable`` ``failures`` times, then 200."""

    def __init__(self, failures: int, retry_after: str | None) -> None:
        self.failures = failures
        self.retry_after = retry_after
        self.seen: list[float] = []

    async def handle(self, request: Request) -> Response:
        self.seen.append(time.monotonic())
        if len(self.seen) <= self.failures:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            body = {"error": {"code": "database_unavailable", "message": "later"}}
            return JSONResponse(body, status_code=503, headers=headers)
        return JSONResponse({"id": request.path_params["tid"], "status": "running"})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/v1/tasks/{tid}", self.handle, methods=["GET"])])


async def test_503s_are_retried_with_backoff_and_then_given_up() -> None:
    flaky = Flaky(failures=2, retry_after=None)
    port = free_port()
    async with uvicorn_serving(flaky.app(), port, lifespan="off"):
        url = f"http://127.0.0.1:{port}"
        retry = Retry(attempts=3, base=0.05, cap=0.2)
        async with AsyncClient(url, "k", retry=retry) as tb:
            assert (await tb.get_task("t"))["status"] == "running"
        assert len(flaky.seen) == 3
        flaky.seen.clear()
        async with AsyncClient(url, "k", retry=Retry(attempts=2, base=0.05)) as tb:
            with pytest.raises(Unavailable) as gave_up:
                await tb.get_task("t")
        assert len(flaky.seen) == 2 and gave_up.value.code == "database_unavailable"
    honoured = Flaky(failures=1, retry_after="1")
    port = free_port()
    async with uvicorn_serving(honoured.app(), port, lifespan="off"):
        with Client(f"http://127.0.0.1:{port}", "k") as tb:
            assert (await asyncio.to_thread(tb.get_task, "t"))["id"] == "t"
    assert honoured.seen[1] - honoured.seen[0] >= 0.95


def test_the_retry_policy_bounds_and_jitter() -> None:
    policy = Retry(attempts=4, base=0.5, cap=2.0, max_wait=10.0)
    later = ApiError("x", code="rate_limited", status=429, retry_after=3.0)
    busy = ApiError("x", code="database_unavailable", status=503)
    for _ in range(200):
        wait = policy.delay(1, later)
        assert wait is not None and 3.0 <= wait <= 3.5
        for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0)):
            backoff = policy.delay(attempt, busy)
            assert backoff is not None and 0 <= backoff <= ceiling
    assert policy.delay(4, busy) is None  # bounded attempts
    assert policy.delay(1, ApiError("x", code="c", status=500)) is None
    too_long = ApiError("x", code="rate_limited", status=429, retry_after=60.0)
    assert policy.delay(1, too_long) is None
