"""The pure parts of webhooks: event types from changes, signatures, backoff, and the
address guard; and bad input on every webhook endpoint."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from server import transitions as rules
from server.delivery import egress
from server.delivery.queue import RetryPolicy
from server.delivery.webhooks import signing
from server.delivery.webhooks.events import WebhookEventType, build_event, wants
from server.errors import Unprocessable
from server.ops import (
    CancelTask,
    CompleteTask,
    CreateTask,
    PostponeTask,
    ResumeTask,
    TaskOp,
    UpdateTask,
)
from server.wire import TaskCreate, TaskPatch
from tests.push.receiver import Receiver
from tests.support.app import Live
from tests.support.tasks import assert_error, task_body

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def created() -> rules.TaskState:
    state = rules.create(TaskCreate.model_validate(task_body("t-1", "alice")), None, NOW).state
    assert state is not None
    return state


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (UpdateTask("t-1", TaskPatch(title="New")), WebhookEventType.UPDATED),
        (UpdateTask("t-1", TaskPatch(owner="bob")), WebhookEventType.REASSIGNED),
        (CompleteTask("t-1", actor="alice"), WebhookEventType.COMPLETED),
        (CancelTask("t-1"), WebhookEventType.CANCELED),
        (
            PostponeTask("t-1", NOW + timedelta(days=1)),
            WebhookEventType.POSTPONED,
        ),
    ],
)
def test_each_change_is_one_event_of_its_type(op: TaskOp, expected: WebhookEventType) -> None:
    outcome = rules.decide(op, created(), NOW)
    event = build_event(op, outcome, NOW)
    assert event is not None and event.type is expected
    assert event.task_id == "t-1"


def test_create_and_resume_events_and_the_actor() -> None:
    body = TaskCreate.model_validate(task_body("t-1", "alice"))
    first = rules.create(body, None, NOW)
    event = build_event(CreateTask(body), first, NOW)
    assert event is not None and event.type is WebhookEventType.CREATED
    assert '"actor":null' in event.body
    later = rules.postpone("t-1", NOW + timedelta(hours=1), first.state, NOW, None)
    back = rules.resume("t-1", later.state, NOW, "alice")
    event = build_event(ResumeTask("t-1", actor="alice"), back, NOW)
    assert event is not None and event.type is WebhookEventType.RESUMED
    assert '"actor":"alice"' in event.body and '"status":"running"' in event.body


def test_an_idempotent_repeat_is_no_event() -> None:
    body = TaskCreate.model_validate(task_body("t-1", "alice"))
    repeat = rules.create(body, created(), NOW)
    assert build_event(CreateTask(body), repeat, NOW) is None


def test_a_reassignment_concerns_both_owners() -> None:
    op = UpdateTask("t-1", TaskPatch(owner="bob"))
    outcome = rules.update("t-1", TaskPatch(owner="bob"), created(), NOW)
    event = build_event(op, outcome, NOW)
    assert event is not None and event.owners == {"alice", "bob"}
    types = frozenset({"task.reassigned"})
    assert wants(event, "default", types, frozenset({"alice"}))
    assert wants(event, "default", types, None)
    assert not wants(event, "default", types, frozenset({"carol"}))
    assert not wants(event, "default", frozenset({"task.created"}), None)


def test_an_event_is_only_for_endpoints_of_its_tenant() -> None:
    body = TaskCreate.model_validate(task_body("t-1", "alice"))
    op = CreateTask(body, tenant="acme")
    event = build_event(op, rules.create(body, None, NOW, tenant="acme"), NOW)
    assert event is not None and event.tenant == "acme"
    assert '"tenant":"acme"' in event.body
    types = frozenset({"task.created"})
    assert wants(event, "acme", types, None) and wants(event, "acme", types, frozenset({"alice"}))
    assert not wants(event, "default", types, None)
    assert not wants(event, "default", types, frozenset({"alice"}))


def test_signature_verifies_with_the_reference_library() -> None:
    secret = signing.new_secret()
    body = b'{"type":"task.created"}'
    ts = int(datetime.now(UTC).timestamp())
    headers = signing.headers(secret, "msg_1", ts, body)
    assert Webhook(secret).verify(body, headers) == {"type": "task.created"}
    tampered = dict(headers, **{"webhook-id": "msg_2"})
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(secret).verify(body, tampered)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(base_s=5.0, cap_s=3600.0, max_age_s=86400.0)
    rand = random.Random(7)
    for attempt, full in [(1, 5.0), (2, 10.0), (5, 80.0), (30, 3600.0)]:
        delays = [policy.delay(attempt, rand) for _ in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 40, "jittered"
    total, attempts = 0.0, 0
    while total < policy.max_age_s:
        attempts += 1
        total += policy.delay(attempts, rand)
    assert 15 <= attempts <= 40, "about a day of retries"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.1.2.3/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "ftp://example.com/x",
        "http://user:pw@example.com/x",
        "not a url",
    ],
)
def test_check_url_refuses_private_and_odd_urls(url: str) -> None:
    with pytest.raises(Unprocessable):
        egress.check_url(url, allow_private=False)


def test_check_url_allows_public_and_allowed_private() -> None:
    assert egress.check_url("https://engine.example.com/hook", allow_private=False)
    assert egress.check_url("http://127.0.0.1:9/x", allow_private=True)


async def test_the_guard_refuses_a_private_address_at_connect_time(receiver: Receiver) -> None:
    # However a URL got past registration (a DNS name that now resolves to loopback,
    # a redirect), the connection itself is refused.
    session = egress.session(allow_private=False, timeout_s=3)
    try:
        with pytest.raises(aiohttp.ClientConnectorError, match="non-public address"):
            await session.post(receiver.url, data=b"{}")
    finally:
        await session.close()
    assert receiver.requests == []


# ---------------------------------------------------------------- bad input


async def test_webhook_calls_need_a_producer_key(embedded: Live) -> None:
    async with embedded.person("alice") as c:
        assert_error(await c.get("/api/v1/webhooks"), 401)
        assert_error(await c.post("/api/v1/webhooks", json={"url": "https://e.example/"}), 401)
    async with embedded.producer() as c:
        anon = await c.get("/api/v1/webhooks", headers={"Authorization": ""})
    assert_error(anon, 401, "missing_credentials")


async def test_registering_bad_endpoints(embedded: Live) -> None:
    async with embedded.producer() as c:
        assert_error(await c.post("/api/v1/webhooks", content=b"{nope"), 400, "malformed_json")
        big = b'{"url": "https://e.example/", "description": "' + b"x" * 70_000 + b'"}'
        assert_error(await c.post("/api/v1/webhooks", content=big), 413)
        assert_error(await c.post("/api/v1/webhooks", json={}), 422)
        unknown = {"url": "https://e.example/", "events": ["task.exploded"]}
        assert_error(await c.post("/api/v1/webhooks", json=unknown), 422)
        extra = {"url": "https://e.example/", "color": "red"}
        assert_error(await c.post("/api/v1/webhooks", json=extra), 422)
        private = {"url": "http://127.0.0.1:8080/hook"}
        assert_error(await c.post("/api/v1/webhooks", json=private), 422, "private_address")
        assert_error(await c.post("/api/v1/webhooks", json={"url": "gopher://x"}), 422, "bad_url")


async def test_unknown_endpoints_and_deliveries_are_404(embedded: Live) -> None:
    async with embedded.producer() as c:
        assert_error(await c.get("/api/v1/webhooks/ep_nope"), 404)
        assert_error(await c.get("/api/v1/webhooks/whatever"), 404)
        assert_error(await c.patch("/api/v1/webhooks/ep_nope", json={"enabled": True}), 404)
        assert_error(await c.delete("/api/v1/webhooks/ep_nope"), 404)
        assert_error(await c.get("/api/v1/webhooks/ep_nope/deliveries"), 404)
        ep = (await c.post("/api/v1/webhooks", json={"url": "https://e.example/"})).json()
        base = f"/api/v1/webhooks/{ep['id']}/deliveries"
        assert_error(await c.get(f"{base}/msg_nope"), 404, "delivery_not_found")
        assert_error(await c.post(f"{base}/msg_nope/redeliver"), 404, "delivery_not_found")
        assert_error(await c.get(base, params={"status": "weird"}), 400, "bad_query")
        assert_error(await c.get(base, params={"limit": "0"}), 400, "bad_query")
        assert_error(await c.get(base, params={"cursor": "%%%"}), 400, "bad_cursor")
        assert_error(await c.patch(f"/api/v1/webhooks/{ep['id']}", json={}), 422, "empty_patch")


async def test_endpoint_crud_never_shows_the_secret_again(embedded: Live) -> None:
    async with embedded.producer() as c:
        made = await c.post(
            "/api/v1/webhooks",
            json={"url": "https://e.example/", "owners": ["bob"], "description": "engine"},
        )
        ep = made.json()
        assert made.status_code == 201 and ep["secret"].startswith("whsec_")
        assert ep["events"] == sorted(t.value for t in WebhookEventType)
        got = (await c.get(f"/api/v1/webhooks/{ep['id']}")).json()
        assert "secret" not in got and got["owners"] == ["bob"]
        listed = (await c.get("/api/v1/webhooks")).json()["endpoints"]
        assert [e["id"] for e in listed] == [ep["id"]] and "secret" not in listed[0]
        patched = await c.patch(
            f"/api/v1/webhooks/{ep['id']}", json={"owners": None, "events": ["task.completed"]}
        )
        assert patched.json()["owners"] is None and patched.json()["events"] == ["task.completed"]
        off = await c.patch(f"/api/v1/webhooks/{ep['id']}", json={"enabled": False})
        assert off.json()["disabled_reason"] == "disabled by a producer"
        resend = await c.post(f"/api/v1/webhooks/{ep['id']}/deliveries/msg_x/redeliver")
        assert_error(resend, 409, "endpoint_disabled")
        assert (await c.delete(f"/api/v1/webhooks/{ep['id']}")).status_code == 204
        assert_error(await c.get(f"/api/v1/webhooks/{ep['id']}"), 404)
