"""Tenants on the delivery side: two tenants with the same task ids, user ids, role ids
and webhook URLs; each tenant's endpoints and browsers get only that tenant's changes, and
another tenant's endpoint or subscription answers exactly like a missing one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from server.auth import mint_for
from server.delivery.side import Delivery
from server.delivery.tables import outbox_t
from server.delivery.webpush.hook import person_of
from server.feeds import DEFAULT_TENANT
from server.settings import Settings
from tests.push.conftest import fast
from tests.push.receiver import Received, Receiver, running
from tests.push.test_webpush import Browser, vapid_settings
from tests.support.app import PRODUCER_KEY, Live, serve
from tests.support.tasks import assert_error, task_body

ACME = "acme"
ACME_KEY = "pk-acme-0123"
TENANTS = (DEFAULT_TENANT, ACME)
KEYS = {DEFAULT_TENANT: PRODUCER_KEY, ACME: ACME_KEY}


def two_tenants(settings: Settings) -> Settings:
    """``settings`` with one producer key per tenant (and fast loopback deliveries)."""
    return fast(replace(settings, producer_keys=frozenset({PRODUCER_KEY, f"{ACME}={ACME_KEY}"})))


def producer(live: Live, tenant: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=live.base_url, headers={"Authorization": f"Bearer {KEYS[tenant]}"}
    )


def person(live: Live, user: str, tenant: str) -> httpx.AsyncClient:
    token = mint_for(live.settings, user, tenant=tenant)
    return httpx.AsyncClient(base_url=live.base_url, headers={"Authorization": f"Bearer {token}"})


def title(tid: str, tenant: str) -> str:
    return f"Approve {tid} of {tenant}"


def queue_task(tid: str, role: str, tenant: str) -> dict[str, Any]:
    """A task offered to ``role`` (no owner until someone claims it)."""
    return {**task_body(tid, title=title(tid, tenant)), "owner": None, "role": role}


async def register(live: Live, tenant: str, url: str, **kw: Any) -> dict[str, Any]:
    async with producer(live, tenant) as c:
        resp = await c.post("/api/v1/webhooks", json={"url": url, **kw})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def logged(live: Live, tenant: str, endpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The endpoint's delivery log, oldest first (its rows exist once the write returned)."""
    async with producer(live, tenant) as c:
        resp = await c.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries")
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, Any]] = resp.json()["deliveries"]
    return rows[::-1]


async def queued(live: Live) -> list[tuple[str, str, str]]:
    """Every outbox row as (tenant, target, event type), sorted: what the hooks queued."""
    delivery: Delivery = live.app.state.delivery
    async with delivery.outbox.engines.reader.connect() as conn:
        rows = await conn.execute(
            select(outbox_t.c.tenant, outbox_t.c.target, outbox_t.c.event_type)
        )
        return sorted((r.tenant, r.target, r.event_type) for r in rows)


def signed_by(endpoints: dict[str, dict[str, Any]], r: Received) -> tuple[str, dict[str, Any]]:
    """Which endpoint a request was for (the one secret it verifies with), and its body."""
    found = []
    for name, ep in endpoints.items():
        try:
            found.append((name, Webhook(ep["secret"]).verify(r.body, r.headers)))
        except Exception:
            continue
    assert len(found) == 1, f"verifies with {[n for n, _ in found]}"
    return found[0]


@pytest.fixture
async def tenanted(backend: Settings) -> AsyncIterator[Live]:
    async with serve(two_tenants(backend)) as live:
        yield live


# ---------------------------------------------------------------- webhooks


async def test_each_tenants_endpoint_gets_only_its_own_tenants_events(
    tenanted: Live, receiver: Receiver
) -> None:
    # the same URL registered in both tenants: the signature tells whose delivery it is
    endpoints = {tenant: await register(tenanted, tenant, receiver.url) for tenant in TENANTS}
    for tenant in TENANTS:
        async with producer(tenanted, tenant) as c:
            body = task_body("t-1", "alice", title=title("t-1", tenant))
            assert (await c.post("/api/v1/tasks", json=body)).status_code == 201
        async with person(tenanted, "alice", tenant) as c:
            assert (await c.post("/api/v1/tasks/t-1/complete")).status_code == 200
    for tenant in TENANTS:
        log = await logged(tenanted, tenant, endpoints[tenant])
        assert [(d["event_type"], d["payload"]["data"]["tenant"]) for d in log] == [
            ("task.created", tenant),
            ("task.completed", tenant),
        ]
        assert {d["payload"]["data"]["title"] for d in log} == {title("t-1", tenant)}
    # nothing was queued for another tenant's endpoint, whatever its row says
    assert await queued(tenanted) == sorted(
        (tenant, endpoints[tenant]["id"], kind)
        for tenant in TENANTS
        for kind in ("task.created", "task.completed")
    )
    await receiver.wait(lambda: len(receiver.accepted) == 4)
    got: dict[str, list[dict[str, Any]]] = {tenant: [] for tenant in TENANTS}
    for r in receiver.requests:
        tenant, event = signed_by(endpoints, r)
        got[tenant].append(event)
    for tenant in TENANTS:
        events = sorted(got[tenant], key=lambda e: e["type"], reverse=True)
        assert [(e["type"], e["data"]["id"], e["data"]["tenant"]) for e in events] == [
            ("task.created", "t-1", tenant),
            ("task.completed", "t-1", tenant),
        ]
        assert {e["data"]["title"] for e in events} == {title("t-1", tenant)}
        assert events[1]["data"]["actor"] == "alice"


async def test_role_tasks_reach_owner_filtered_endpoints_once_someone_holds_them(
    tenanted: Live, receiver: Receiver
) -> None:
    everything = {t: await register(tenanted, t, receiver.url) for t in TENANTS}
    alices = await register(tenanted, ACME, receiver.url, owners=["alice"])
    for tenant in TENANTS:  # the same role in both tenants, with the same member
        async with producer(tenanted, tenant) as c:
            resp = await c.put("/api/v1/roles/approvers/members", json={"members": ["alice"]})
            assert resp.status_code == 200, resp.text
    async with producer(tenanted, ACME) as c:
        offered = queue_task("q-1", "approvers", ACME)
        assert (await c.post("/api/v1/tasks", json=offered)).status_code == 201
        claim = await c.post("/api/v1/tasks/q-1/claim", json={"user": "alice"})
        assert claim.status_code == 200, claim.text
        assert (await c.post("/api/v1/tasks/q-1/unclaim")).status_code == 200
    log = await logged(tenanted, ACME, everything[ACME])
    assert [(d["event_type"], d["payload"]["data"]["owner"]) for d in log] == [
        ("task.created", None),
        ("task.claimed", "alice"),
        ("task.unclaimed", None),
    ]
    for d in log:
        data = d["payload"]["data"]
        assert (data["tenant"], data["role"], data["id"]) == (ACME, "approvers", "q-1")
    assert log[2]["payload"]["data"]["previous_owner"] == "alice"
    # an owner filter matches the owner or the previous owner: not the unheld queue task
    filtered = await logged(tenanted, ACME, alices)
    assert [d["event_type"] for d in filtered] == ["task.claimed", "task.unclaimed"]
    assert await logged(tenanted, DEFAULT_TENANT, everything[DEFAULT_TENANT]) == []
    await receiver.wait(lambda: len(receiver.accepted) == 5)
    whose = sorted(signed_by({**everything, "alices": alices}, r)[0] for r in receiver.requests)
    assert whose == [ACME] * 3 + ["alices"] * 2


async def test_another_tenants_endpoint_answers_exactly_like_a_missing_one(
    sqlite_url: str, receiver: Receiver
) -> None:
    from tests.support.app import make_settings

    async with serve(two_tenants(make_settings(sqlite_url))) as live:
        ep = await register(live, DEFAULT_TENANT, receiver.url)
        async with producer(live, DEFAULT_TENANT) as c:
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        (delivery,) = await logged(live, DEFAULT_TENANT, ep)
        base = f"/api/v1/webhooks/{ep['id']}"
        one = f"{base}/deliveries/{delivery['id']}"

        async def calls(c: httpx.AsyncClient) -> list[tuple[int, Any]]:
            answers = [
                await c.get(base),
                await c.patch(base, json={"enabled": False, "url": "https://e.example/"}),
                await c.get(f"{base}/deliveries"),
                await c.get(one),
                await c.post(f"{one}/redeliver"),
                await c.delete(base),
            ]
            for resp in answers:
                assert_error(resp, 404, "not_found")
            return [(r.status_code, r.json()) for r in answers]

        async with producer(live, ACME) as c:
            assert (await c.get("/api/v1/webhooks")).json() == {"endpoints": []}
            theirs = await calls(c)
        async with producer(live, DEFAULT_TENANT) as c:
            still = (await c.get(base)).json()  # acme's calls changed nothing
            assert still["enabled"] is True and still["url"] == receiver.url
            assert [e["id"] for e in (await c.get("/api/v1/webhooks")).json()["endpoints"]] == [
                ep["id"]
            ]
            assert (await c.get(one)).json()["id"] == delivery["id"]
            assert (await c.delete(base)).status_code == 204
            missing = await calls(c)
        assert theirs == missing


# ---------------------------------------------------------------- Web Push


@pytest.fixture
async def pushing(backend: Settings) -> AsyncIterator[Live]:
    async with serve(vapid_settings(two_tenants(backend))) as live:
        yield live


@pytest.fixture
async def push_service() -> AsyncIterator[Receiver]:
    async with running(Receiver()) as r:
        yield r


async def subscribe(live: Live, user: str, tenant: str, browser: Browser) -> httpx.Response:
    async with person(live, user, tenant) as c:
        return await c.post("/api/v1/me/push-subscriptions", json=browser.subscription())


async def endpoints_of(live: Live, user: str, tenant: str) -> list[str]:
    async with person(live, user, tenant) as c:
        subs = (await c.get("/api/v1/me/push-subscriptions")).json()["subscriptions"]
    return [s["endpoint"] for s in subs]


def test_pushes_are_for_a_persons_own_feed_only() -> None:
    assert person_of("acme/user:alice") == ("acme", "alice")
    assert person_of("default/user:a/b:c") == ("default", "a/b:c")
    assert person_of("acme/role:approvers") is None


async def test_each_tenants_alice_gets_only_her_tenants_pushes(
    pushing: Live, push_service: Receiver
) -> None:
    browsers = {t: Browser.new(f"{push_service.base()}/push/{t}-alice") for t in TENANTS}
    subs = {}
    for tenant in TENANTS:
        resp = await subscribe(pushing, "alice", tenant, browsers[tenant])
        assert resp.status_code == 201, resp.text
        subs[tenant] = resp.json()
        assert await endpoints_of(pushing, "alice", tenant) == [browsers[tenant].endpoint]
    async with producer(pushing, ACME) as c:
        await c.put("/api/v1/roles/approvers/members", json={"members": ["alice"]})
    for tenant in TENANTS:
        async with producer(pushing, tenant) as c:
            body = task_body("t-1", "alice", title=title("t-1", tenant))
            assert (await c.post("/api/v1/tasks", json=body)).status_code == 201
    async with producer(pushing, ACME) as c:
        # a queue task rings no member's phone; it is pushed once someone claims it
        offered = queue_task("q-1", "approvers", ACME)
        assert (await c.post("/api/v1/tasks", json=offered)).status_code == 201
        claim = await c.post("/api/v1/tasks/q-1/claim", json={"user": "alice"})
        assert claim.status_code == 200, claim.text
    assert await queued(pushing) == sorted(
        [
            (DEFAULT_TENANT, subs[DEFAULT_TENANT]["id"], "task.added"),
            (ACME, subs[ACME]["id"], "task.added"),
            (ACME, subs[ACME]["id"], "task.added"),
        ]
    )
    await push_service.wait(lambda: len(push_service.requests) == 3)
    got: dict[str, list[dict[str, Any]]] = {t: [] for t in TENANTS}
    for r in push_service.requests:
        tenant = r.path.removeprefix("/push/").removesuffix("-alice")
        got[tenant].append(browsers[tenant].decrypt(r))
    assert [(p["type"], p["task"]["title"]) for p in got[DEFAULT_TENANT]] == [
        ("task.added", title("t-1", DEFAULT_TENANT))
    ]
    assert [(p["type"], p["task"]["title"], p["seq"]) for p in got[ACME]] == [
        ("task.added", title("t-1", ACME), 1),
        ("task.added", title("q-1", ACME), 2),
    ]
    # deleting another tenant's alice's subscription: exactly like a missing one
    url = f"/api/v1/me/push-subscriptions/{subs[DEFAULT_TENANT]['id']}"
    async with person(pushing, "alice", ACME) as c:
        theirs = await c.delete(url)
    assert_error(theirs, 404, "subscription_not_found")
    assert await endpoints_of(pushing, "alice", DEFAULT_TENANT) == [
        browsers[DEFAULT_TENANT].endpoint
    ]
    async with person(pushing, "alice", DEFAULT_TENANT) as c:
        assert (await c.delete(url)).status_code == 204
        missing = await c.delete(url)
    assert (theirs.status_code, theirs.json()) == (missing.status_code, missing.json())
    assert await endpoints_of(pushing, "alice", ACME) == [browsers[ACME].endpoint]


async def test_a_browser_registered_in_another_tenant_is_another_persons(
    pushing: Live, push_service: Receiver
) -> None:
    browser = Browser.new(push_service.base() + "/push/shared")
    first = await subscribe(pushing, "alice", DEFAULT_TENANT, browser)
    assert first.status_code == 201, first.text
    # the same user id in another tenant, knowing only the URL: refused, nothing moves
    intruder = Browser.new(browser.endpoint)
    assert_error(await subscribe(pushing, "alice", ACME, intruder), 409, "subscription_taken")
    assert await endpoints_of(pushing, "alice", ACME) == []
    assert await endpoints_of(pushing, "alice", DEFAULT_TENANT) == [browser.endpoint]
    async with producer(pushing, ACME) as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice", title=title("t-1", ACME)))
    async with producer(pushing, DEFAULT_TENANT) as c:
        body = task_body("t-1", "alice", title=title("t-1", DEFAULT_TENANT))
        await c.post("/api/v1/tasks", json=body)
    await push_service.wait(lambda: len(push_service.requests) == 1)
    pushed = browser.decrypt(push_service.requests[0])
    assert pushed["task"]["title"] == title("t-1", DEFAULT_TENANT)
    # the same browser (same keys) where alice of acme logged in now: it moves to her
    moved = await subscribe(pushing, "alice", ACME, browser)
    assert moved.status_code == 201, moved.text
    assert moved.json()["id"] == first.json()["id"]
    assert await endpoints_of(pushing, "alice", DEFAULT_TENANT) == []
    assert await endpoints_of(pushing, "alice", ACME) == [browser.endpoint]
    async with producer(pushing, DEFAULT_TENANT) as c:
        await c.post("/api/v1/tasks/t-1/complete")
    async with producer(pushing, ACME) as c:
        await c.post("/api/v1/tasks/t-1/complete")
    await push_service.wait(lambda: len(push_service.requests) == 2)
    retracted = browser.decrypt(push_service.requests[1])
    assert (retracted["type"], retracted["task"]["title"]) == (
        "task.removed",
        title("t-1", ACME),
    )
