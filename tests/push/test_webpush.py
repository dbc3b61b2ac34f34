"""Web Push end to end against a local push endpoint that decrypts every payload with
the subscription's private key (RFC 8291 through http-ece) and checks the VAPID JWT."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import http_ece
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.responses import Response

from server.__main__ import main
from server.settings import Settings
from tests.push.conftest import eventually, fast
from tests.push.receiver import Received, Receiver, running
from tests.support.app import Live, serve
from tests.support.tasks import assert_error, task_body

VAPID_SUBJECT = "mailto:push-test@example.com"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def vapid_settings(settings: Settings) -> Settings:
    private = ec.generate_private_key(ec.SECP256R1())
    raw = private.private_numbers().private_value.to_bytes(32, "big")
    return replace(fast(settings), vapid_private_key=b64url(raw), vapid_subject=VAPID_SUBJECT)


@dataclass
class Browser:
    """What a browser holds for one push subscription: its key pair and auth secret."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls, endpoint: str) -> Browser:
        return cls(endpoint, ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    def subscription(self) -> dict[str, Any]:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        keys = {"p256dh": b64url(point), "auth": b64url(self.auth)}
        return {"endpoint": self.endpoint, "expirationTime": None, "keys": keys}

    def decrypt(self, r: Received) -> dict[str, Any]:
        assert r.headers["content-encoding"] == "aes128gcm"
        plain = http_ece.decrypt(
            r.body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        data: dict[str, Any] = orjson.loads(plain)
        return data


def check_vapid(r: Received, public_key: str, audience: str) -> None:
    """The Authorization header is ``vapid t=<ES256 JWT>,k=<server public key>``."""
    scheme, _, params = r.headers["authorization"].partition(" ")
    fields = dict(p.split("=", 1) for p in params.split(","))
    assert scheme == "vapid" and fields["k"] == public_key
    point = base64.urlsafe_b64decode(fields["k"] + "=" * (-len(fields["k"]) % 4))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    claims = jwt.decode(fields["t"], key, algorithms=["ES256"], audience=audience)
    assert claims["sub"] == VAPID_SUBJECT


@pytest.fixture
async def push_service() -> AsyncIterator[Receiver]:
    async with running(Receiver()) as r:
        yield r


@pytest.fixture
async def pushing(backend: Settings) -> AsyncIterator[Live]:
    async with serve(vapid_settings(backend)) as live:
        yield live


async def subscribe(live: Live, user: str, browser: Browser) -> dict[str, Any]:
    async with live.person(user) as c:
        resp = await c.post("/api/v1/me/push-subscriptions", json=browser.subscription())
    assert resp.status_code in (200, 201), resp.text
    body: dict[str, Any] = resp.json()
    return body


async def public_key(live: Live) -> str:
    async with live.person("anyone") as c:
        config = (await c.get("/api/v1/push/config")).json()
    assert config["enabled"] is True
    key: str = config["public_key"]
    return key


async def test_a_new_task_is_pushed_encrypted_and_vapid_signed(
    pushing: Live, push_service: Receiver
) -> None:
    browser = Browser.new(push_service.base() + "/push/alice-1")
    await subscribe(pushing, "alice", browser)
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        await c.post("/api/v1/tasks", json=task_body("b-1", "bob"))  # bob has no browser
    await push_service.wait(lambda: len(push_service.requests) == 1)
    got = push_service.requests[0]
    push = browser.decrypt(got)
    assert push["type"] == "task.added" and push["seq"] == 1 and push["count"] == 1
    assert push["task"] == {
        "id": "t-1",
        "title": "Approve t-1",
        "status": "running",
        "process": "Invoice approval",
        "url": "https://crm.example/pages/approve?task=t-1",
    }
    assert got.path == "/push/alice-1"
    assert got.headers["urgency"] == "high" and int(got.headers["ttl"]) > 0
    assert len(got.headers["topic"]) <= 32
    check_vapid(got, await public_key(pushing), push_service.base())


async def test_completing_a_task_pushes_its_retraction(
    pushing: Live, push_service: Receiver
) -> None:
    browser = Browser.new(push_service.base() + "/push/alice-1")
    await subscribe(pushing, "alice", browser)
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
    await push_service.wait(lambda: len(push_service.requests) == 1)
    async with pushing.person("alice") as c:
        await c.post("/api/v1/tasks/t-1/complete")
    await push_service.wait(lambda: len(push_service.requests) == 2)
    added, removed = (browser.decrypt(r) for r in push_service.requests)
    assert removed["type"] == "task.removed" and removed["reason"] == "completed"
    assert removed["task"]["id"] == "t-1" and removed["task"]["status"] == "completed"
    assert (added["seq"], removed["seq"], removed["count"]) == (1, 2, 0)
    first, second = push_service.requests
    assert first.headers["topic"] == second.headers["topic"], "the retraction replaces the add"
    assert second.headers["urgency"] == "normal"


async def test_a_change_of_the_postponed_count_alone_is_not_pushed(
    pushing: Live, push_service: Receiver
) -> None:
    browser = Browser.new(push_service.base() + "/push/alice-1")
    await subscribe(pushing, "alice", browser)
    later = {"postponed_until": "2099-01-01T00:00:00Z"}
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json={**task_body("p-1", "alice"), **later})
        await c.post("/api/v1/tasks/p-1/cancel")
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
    await push_service.wait(lambda: len(push_service.requests) >= 1)
    pushes = [browser.decrypt(r) for r in push_service.requests]
    # seqs 1 and 2 moved only the postponed count: the first push is the running task
    assert [(p["type"], p["seq"], p["task"]["id"]) for p in pushes] == [("task.added", 3, "t-1")]


@pytest.mark.parametrize("status", [404, 410])
async def test_a_subscription_the_push_service_calls_gone_is_deleted(
    sqlite_url: str, status: int
) -> None:
    from tests.support.app import make_settings

    gone = Receiver(plan=lambda r, rec: Response(status_code=status))
    async with (
        running(gone) as push_service,
        serve(vapid_settings(make_settings(sqlite_url))) as live,
    ):
        await subscribe(live, "alice", Browser.new(push_service.base() + "/push/old"))
        async with live.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        await push_service.wait(lambda: len(push_service.requests) == 1)
        async with live.person("alice") as c:

            async def deleted() -> bool:
                subs = (await c.get("/api/v1/me/push-subscriptions")).json()
                return not subs["subscriptions"]

            await eventually(deleted)
        async with live.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("t-2", "alice"))
    assert len(push_service.requests) == 1, "nothing more is sent to a gone subscription"


async def test_a_push_service_error_is_retried(sqlite_url: str) -> None:
    from tests.support.app import make_settings

    def plan(r: Received, rec: Receiver) -> Response:
        return Response(status_code=503 if len(rec.requests) == 1 else 201)

    browser: Browser
    async with (
        running(Receiver(plan=plan)) as push_service,
        serve(vapid_settings(make_settings(sqlite_url))) as live,
    ):
        browser = Browser.new(push_service.base() + "/push/a")
        await subscribe(live, "alice", browser)
        async with live.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        await push_service.wait(lambda: len(push_service.requests) == 2)
    first, second = (browser.decrypt(r) for r in push_service.requests)
    assert first == second and first["type"] == "task.added"


async def endpoints_of(live: Live, user: str) -> list[str]:
    async with live.person(user) as c:
        subs = (await c.get("/api/v1/me/push-subscriptions")).json()["subscriptions"]
    return [s["endpoint"] for s in subs]


async def test_the_same_person_registering_again_updates_their_subscription(
    pushing: Live, push_service: Receiver
) -> None:
    endpoint = push_service.base() + "/push/alice-1"
    first = await subscribe(pushing, "alice", Browser.new(endpoint))
    renewed = Browser.new(endpoint)  # the browser's keys changed
    async with pushing.person("alice") as c:
        resp = await c.post("/api/v1/me/push-subscriptions", json=renewed.subscription())
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == first["id"]
    assert await endpoints_of(pushing, "alice") == [endpoint]
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
    await push_service.wait(lambda: len(push_service.requests) == 1)
    assert renewed.decrypt(push_service.requests[0])["task"]["id"] == "t-1"


async def test_another_person_cannot_take_over_a_subscription(
    pushing: Live, push_service: Receiver
) -> None:
    alices = Browser.new(push_service.base() + "/push/alice-1")
    mine = await subscribe(pushing, "alice", alices)
    intruder = Browser.new(alices.endpoint)  # the same endpoint, other keys
    async with pushing.person("bob") as c:
        resp = await c.post("/api/v1/me/push-subscriptions", json=intruder.subscription())
    assert_error(resp, 409, "subscription_taken")
    assert await endpoints_of(pushing, "bob") == []
    async with pushing.person("alice") as c:
        subs = (await c.get("/api/v1/me/push-subscriptions")).json()["subscriptions"]
    assert [s["id"] for s in subs] == [mine["id"]]
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("b-1", "bob"))
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
    await push_service.wait(lambda: len(push_service.requests) == 1)
    push = alices.decrypt(push_service.requests[0])  # still encrypted for alice's keys
    assert push["task"]["id"] == "t-1" and push["type"] == "task.added"
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-2", "alice"))
    await push_service.wait(lambda: len(push_service.requests) == 2)
    ids = [alices.decrypt(r)["task"]["id"] for r in push_service.requests]
    assert ids == ["t-1", "t-2"], "bob's task never reaches alice's browser"


async def test_the_same_browser_moves_to_the_person_now_using_it(
    pushing: Live, push_service: Receiver
) -> None:
    browser = Browser.new(push_service.base() + "/push/shared")
    first = await subscribe(pushing, "alice", browser)
    async with pushing.person("bob") as c:  # bob logs in on the same browser
        resp = await c.post("/api/v1/me/push-subscriptions", json=browser.subscription())
    assert resp.status_code == 201, resp.text
    assert resp.json()["id"] == first["id"]
    assert await endpoints_of(pushing, "alice") == []
    assert await endpoints_of(pushing, "bob") == [browser.endpoint]
    async with pushing.producer() as c:
        await c.post("/api/v1/tasks", json=task_body("t-1", "alice"))
        await c.post("/api/v1/tasks", json=task_body("b-1", "bob"))
    await push_service.wait(lambda: len(push_service.requests) == 1)
    assert browser.decrypt(push_service.requests[0])["task"]["id"] == "b-1"


async def test_people_registering_one_new_endpoint_at_once_get_one_owner(
    pushing: Live,
) -> None:
    endpoint = "https://push.example.net/send/raced"
    browsers = {user: Browser.new(endpoint) for user in ("alice", "bob", "carol", "dave")}
    url = "/api/v1/me/push-subscriptions"

    async def register(user: str) -> tuple[str, int, str]:
        async with pushing.person(user) as c:
            resp = await c.post(url, json=browsers[user].subscription())
        return user, resp.status_code, resp.text

    for i in range(3):  # the same browser, registered twice at once by its person
        same = Browser.new(f"{endpoint}/{i}")
        async with pushing.person("erin") as c:
            both = await asyncio.gather(*(c.post(url, json=same.subscription()) for _ in range(2)))
        assert sorted(r.status_code for r in both) == [200, 201], [r.text for r in both]
        assert both[0].json()["id"] == both[1].json()["id"]
    answers = await asyncio.gather(*(register(user) for user in browsers))
    won = [user for user, status, _ in answers if status == 201]
    assert len(won) == 1, answers
    for user, status, text in answers:
        if user not in won:
            assert status == 409 and "subscription_taken" in text, (user, status, text)
    for user in browsers:
        assert await endpoints_of(pushing, user) == ([endpoint] if user in won else [])


async def test_bad_subscriptions_get_json_errors(pushing: Live) -> None:
    good = Browser.new("https://push.example.net/send/1").subscription()
    url = "/api/v1/me/push-subscriptions"
    async with pushing.producer() as c:
        assert_error(await c.post(url, json=good), 401)  # a producer key is not a person
    async with pushing.person("alice") as c:
        assert_error(await c.post(url, headers={"Authorization": ""}, json=good), 401)
        assert_error(await c.post(url, content=b"{]"), 400, "malformed_json")
        assert_error(await c.post(url, content=b'{"endpoint": "' + b"x" * 70_000 + b'"}'), 413)
        assert_error(await c.post(url, json={"endpoint": good["endpoint"]}), 422)
        bad_point = {**good, "keys": {"p256dh": b64url(b"\x04" + b"\x01" * 64), "auth": "AAAA"}}
        assert_error(await c.post(url, json=bad_point), 422, "bad_keys")
        short_auth = {**good, "keys": {**good["keys"], "auth": b64url(b"123")}}
        assert_error(await c.post(url, json=short_auth), 422, "bad_keys")
        assert_error(await c.post(url, json={**good, "endpoint": "ftp://x/y"}), 422, "bad_url")
        mine = (await c.post(url, json=good)).json()
    async with pushing.person("bob") as c:
        assert_error(await c.delete(f"{url}/{mine['id']}"), 404, "subscription_not_found")
        assert_error(await c.delete(f"{url}/nonsense"), 404)
    async with pushing.person("alice") as c:
        assert (await c.delete(f"{url}/{mine['id']}")).status_code == 204
        assert_error(await c.delete(f"{url}/{mine['id']}"), 404)


async def test_private_push_endpoints_are_refused_unless_allowed(sqlite_url: str) -> None:
    from tests.support.app import make_settings

    settings = replace(vapid_settings(make_settings(sqlite_url)), push_allow_private=False)
    async with serve(settings) as live, live.person("alice") as c:
        for endpoint in ("http://127.0.0.1:9/push", "https://10.0.0.7/push"):
            sub = Browser.new(endpoint).subscription()
            resp = await c.post("/api/v1/me/push-subscriptions", json=sub)
            assert_error(resp, 422, "private_address")
        plain = Browser.new("http://push.example.net/x").subscription()
        assert_error(await c.post("/api/v1/me/push-subscriptions", json=plain), 422, "bad_url")


async def test_without_vapid_keys_push_is_off(embedded: Live) -> None:
    async with embedded.person("alice") as c:
        assert (await c.get("/api/v1/push/config")).json() == {"enabled": False, "public_key": None}
        sub = Browser.new("https://push.example.net/x").subscription()
        resp = await c.post("/api/v1/me/push-subscriptions", json=sub)
    assert_error(resp, 503, "push_disabled")


def test_the_vapid_command_prints_keys_the_server_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from server.delivery.webpush.keys import VapidKeys

    assert main(["vapid", "--subject", "mailto:ops@example.org"]) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    settings = Settings(
        vapid_private_key=lines["TASKBELL_VAPID_PRIVATE_KEY"],
        vapid_public_key=lines["TASKBELL_VAPID_PUBLIC_KEY"],
        vapid_subject=lines["TASKBELL_VAPID_SUBJECT"],
    )
    keys = VapidKeys.from_settings(settings)
    assert keys is not None and keys.public_key == lines["TASKBELL_VAPID_PUBLIC_KEY"]


def test_unusable_vapid_settings_refuse_to_start() -> None:
    from server.delivery.webpush.keys import VapidKeys
    from server.errors import ConfigError

    private, _ = VapidKeys.generate()
    _, other_public = VapidKeys.generate()
    with pytest.raises(ConfigError, match="P-256"):
        VapidKeys.from_settings(Settings(vapid_private_key="nope", vapid_subject=VAPID_SUBJECT))
    mismatch = Settings(
        vapid_private_key=private, vapid_public_key=other_public, vapid_subject=VAPID_SUBJECT
    )
    with pytest.raises(ConfigError, match="does not match"):
        VapidKeys.from_settings(mismatch)
    env = {"TASKBELL_DEMO": "1", "TASKBELL_VAPID_PRIVATE_KEY": private}
    with pytest.raises(ConfigError, match="TASKBELL_VAPID_SUBJECT"):
        Settings.from_env(env)


async def test_the_service_worker_is_served_from_the_root(embedded: Live) -> None:
    async with embedded.person("alice") as c:
        resp = await c.get("/sw.js")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/javascript")
    assert 'addEventListener("push"' in resp.text and "task.removed" in resp.text


async def test_a_newer_push_supersedes_the_untried_older_ones_of_the_same_task(
    backend: Settings,
) -> None:
    hang = asyncio.Event()

    async def plan(r: Received, rec: Receiver) -> Response:
        if len(rec.requests) == 1:
            await hang.wait()  # the first push is in flight while the rest is queued
        return Response(status_code=201)

    browser: Browser
    async with (
        running(Receiver(plan=plan)) as push_service,
        serve(vapid_settings(backend)) as live,
    ):
        browser = Browser.new(push_service.base() + "/push/alice")
        await subscribe(live, "alice", browser)
        async with live.producer() as c:
            await c.post("/api/v1/tasks", json=task_body("a", "alice"))
            await push_service.wait(lambda: len(push_service.requests) == 1)
            # queued behind the push in flight: b three times, then a and c once each
            await c.post("/api/v1/tasks", json=task_body("b", "alice"))
            await c.patch("/api/v1/tasks/b", json={"title": "Approve b, please"})
            await c.post("/api/v1/tasks/b/complete")
            await c.post("/api/v1/tasks/a/complete")
            await c.post("/api/v1/tasks", json=task_body("c", "alice"))
        hang.set()

        def sent() -> list[tuple[str, str]]:
            pushes = (browser.decrypt(r) for r in push_service.requests)
            return [(p["type"], p["task"]["id"]) for p in pushes]

        # One target's pushes go out in queue order: c's is the last one.
        await push_service.wait(lambda: ("task.added", "c") in sent())
    assert sent() == [
        ("task.added", "a"),  # already tried when a completed: not superseded
        ("task.removed", "b"),  # b's add and update were superseded before being tried
        ("task.removed", "a"),
        ("task.added", "c"),
    ]
