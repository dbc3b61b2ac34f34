"""The process view's API: a person whose token carries ``roles: ["process-admin"]``
reads, cancels and switches processes of their own tenant; everyone else with a user
token gets 403 ``process_admin_required`` whatever the path names; another tenant's
instance answers like a missing one. On SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import jwt
import pytest

from server.auth import PROCESS_ADMIN, mint_token
from server.feeds import DEFAULT_TENANT
from server.settings import Settings
from server.stats import percentile
from tests.support.app import SECRET, Live, make_settings, serve
from tests.support.audiences import ACME, person, producer, two_tenants
from tests.support.server_proc import REPO_ROOT
from tests.support.tasks import assert_error, task_body

ADMIN = "ada"
NAME = "Payroll"


@pytest.fixture
async def tenants(backend: Settings) -> AsyncIterator[Live]:
    async with serve(two_tenants(backend)) as running:
        yield running


def admin_token(user: str = ADMIN, tenant: str = DEFAULT_TENANT, **claims: Any) -> str:
    now = int(time.time())
    body: dict[str, Any] = {"sub": user, "iat": now, "exp": now + 600, "roles": [PROCESS_ADMIN]}
    if tenant != DEFAULT_TENANT:
        body["tid"] = tenant
    return jwt.encode({**body, **claims}, SECRET, algorithm="HS256")


def admin(live: Live, tenant: str = DEFAULT_TENANT, **claims: Any) -> httpx.AsyncClient:
    token = admin_token(tenant=tenant, **claims)
    return httpx.AsyncClient(base_url=live.base_url, headers={"Authorization": f"Bearer {token}"})


def step(tid: str, instance: str, owner: str = "alice", name: str = NAME) -> dict[str, Any]:
    return task_body(tid, owner, process={"instance_id": instance, "name": name})


async def three_instances(c: httpx.AsyncClient) -> None:
    """pa: completed (two steps, alice and bob); pb: running (alice's open step, one in the
    approvers' queue); pc: canceled."""
    await c.post("/api/v1/tasks", json=step("a1", "pa"))
    await c.post("/api/v1/tasks", json=step("a2", "pa", "bob"))
    await c.post("/api/v1/tasks", json=step("b1", "pb"))
    queued = step("b2", "pb")
    queued.pop("owner")
    await c.post("/api/v1/tasks", json={**queued, "role": "approvers"})
    await c.post("/api/v1/tasks", json=step("c1", "pc"))
    for done in ("a1", "a2"):
        assert (await c.post(f"/api/v1/tasks/{done}/complete")).status_code == 200
    assert (await c.post("/api/v1/tasks/c1/cancel")).status_code == 200


# ---------------------------------------------------------------- what an admin sees


async def test_an_admin_lists_instances_with_their_steps_summarised(tenants: Live) -> None:
    async with producer(tenants) as p:
        await three_instances(p)
    async with admin(tenants) as a:
        everything = await a.get("/api/v1/processes")
        running = await a.get("/api/v1/processes", params={"status": "running"})
        ended = await a.get("/api/v1/processes", params={"status": "completed,canceled"})
        other = await a.get("/api/v1/processes", params={"definition": "Other"})
    assert everything.status_code == 200, everything.text
    rows = {r["id"]: r for r in everything.json()["instances"]}
    assert set(rows) == {"pa", "pb", "pc"}
    assert everything.json()["next_cursor"] is None
    assert rows["pa"]["status"] == "completed" and rows["pa"]["duration_ms"] is not None
    assert rows["pa"]["step_counts"] == {"total": 2, "open": 0} and rows["pa"]["open_owners"] == []
    assert rows["pb"]["step_counts"] == {"total": 2, "open": 2}
    assert (rows["pb"]["open_owners"], rows["pb"]["open_roles"]) == (["alice"], ["approvers"])
    assert [r["id"] for r in running.json()["instances"]] == ["pb"]
    assert {r["id"] for r in ended.json()["instances"]} == {"pa", "pc"}
    assert other.json() == {"instances": [], "next_cursor": None}


async def test_an_admin_reads_an_instance_s_steps_with_owners_and_durations(
    tenants: Live,
) -> None:
    async with producer(tenants) as p:
        await three_instances(p)
    async with admin(tenants) as a:
        got = await a.get("/api/v1/processes/pa")
        open_one = (await a.get("/api/v1/processes/pb")).json()
    assert got.status_code == 200, got.text
    steps = got.json()["steps"]
    assert [(s["id"], s["owner"], s["status"]) for s in steps] == [
        ("a1", "alice", "completed"),
        ("a2", "bob", "completed"),
    ]
    for s in steps:
        started = datetime.fromisoformat(s["created_at"])
        ended = datetime.fromisoformat(s["ended_at"])
        assert s["duration_ms"] == int((ended - started).total_seconds() * 1000)
    queued = next(s for s in open_one["steps"] if s["id"] == "b2")
    assert (queued["owner"], queued["role"], queued["duration_ms"]) == (None, "approvers", None)


async def test_stats_count_every_status_and_time_only_completed_instances(
    tenants: Live,
) -> None:
    async with producer(tenants) as p:
        await three_instances(p)
        await p.post("/api/v1/tasks", json=step("d1", "pd", name="Hiring"))
        await p.post("/api/v1/tasks/d1/complete")
    async with admin(tenants) as a:
        got = await a.get("/api/v1/processes/stats")
        rows = (await a.get("/api/v1/processes", params={"status": "completed"})).json()
        future = await a.get("/api/v1/processes/stats", params={"from": "2999-01-01T00:00:00Z"})
    assert got.status_code == 200, got.text
    overall = got.json()["overall"]
    assert overall["counts"] == {"running": 1, "completed": 2, "canceled": 1, "error": 0}
    taken = sorted(r["duration_ms"] for r in rows["instances"])
    assert overall["duration_ms"] == {
        "completed": 2,
        "mean": round(sum(taken) / 2),
        "p50": percentile(taken, 0.5),
        "p95": percentile(taken, 0.95),
        "max": taken[-1],
    }
    assert [s["name"] for s in got.json()["processes"]] == ["Hiring", NAME]
    empty = future.json()
    assert empty["processes"] == [] and empty["overall"]["duration_ms"]["mean"] is None


async def test_an_admin_cancels_an_instance_and_its_steps_leave_the_panels(
    tenants: Live,
) -> None:
    async with producer(tenants) as p:
        await three_instances(p)
    async with admin(tenants) as a:
        canceled = await a.post("/api/v1/processes/pb/cancel")
        again = await a.post("/api/v1/processes/pb/cancel")
        ended = await a.post("/api/v1/processes/pa/cancel")
    async with person(tenants, "alice") as me:
        left = (await me.get("/api/v1/me/tasks")).json()["tasks"]
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled" and canceled.json()["canceled_steps"] == 2
    assert again.status_code == 200 and again.json()["canceled_steps"] == 0
    assert_error(ended, 409, "process_ended")
    assert left == []


async def test_an_admin_disables_and_enables_a_definition(tenants: Live) -> None:
    async with producer(tenants) as p:
        await three_instances(p)
        async with admin(tenants) as a:
            off = await a.post(f"/api/v1/process-definitions/{NAME}/disable")
            listed = (await a.get("/api/v1/process-definitions")).json()["processes"]
            refused = await p.post("/api/v1/processes", json={"id": "px", "name": NAME})
            on = await a.post(f"/api/v1/process-definitions/{NAME}/enable")
            accepted = await p.post("/api/v1/processes", json={"id": "px", "name": NAME})
            unknown = await a.post("/api/v1/process-definitions/Nobody/disable")
    assert off.json() == {"name": NAME, "disabled": True}
    assert listed == [{"name": NAME, "disabled": True}]
    assert_error(refused, 409, "process_disabled")
    assert on.json() == {"name": NAME, "disabled": False}
    assert accepted.status_code == 201
    assert_error(unknown, 404, "process_not_found")


async def test_pages_follow_the_cursor_without_repeats_or_gaps(tenants: Live) -> None:
    async with producer(tenants) as p:
        for i in range(7):
            await p.post("/api/v1/processes", json={"id": f"i{i}", "name": NAME})
        async with admin(tenants) as a:
            seen: list[str] = []
            cursor: str | None = None
            pages = 0
            while True:
                params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
                got = (await a.get("/api/v1/processes", params=params)).json()
                seen += [r["id"] for r in got["instances"]]
                pages += 1
                if pages == 1:  # one that starts while paging is newer: not in later pages
                    await p.post("/api/v1/processes", json={"id": "late", "name": NAME})
                cursor = got["next_cursor"]
                if cursor is None:
                    break
    assert sorted(seen) == [f"i{i}" for i in range(7)] and len(seen) == 7
    assert pages == 3


# ---------------------------------------------------------------- who may not


ADMIN_CALLS = [
    ("GET", "/api/v1/processes"),
    ("GET", "/api/v1/processes/stats"),
    ("GET", "/api/v1/processes/{id}"),
    ("POST", "/api/v1/processes/{id}/cancel"),
    ("GET", "/api/v1/process-definitions"),
    ("POST", "/api/v1/process-definitions/{name}/disable"),
    ("POST", "/api/v1/process-definitions/{name}/enable"),
]


async def test_a_person_without_the_role_gets_the_same_403_whatever_the_path_names(
    tenants: Live,
) -> None:
    async with producer(tenants) as p:
        await three_instances(p)
    bodies: dict[str, set[bytes]] = {}
    async with person(tenants, "alice") as me:
        for method, path in ADMIN_CALLS:
            for iid, name in (("pb", NAME), ("nope", "Nobody"), ("a%20b", "x%01")):
                resp = await me.request(method, path.format(id=iid, name=name))
                assert_error(resp, 403, "process_admin_required")
                bodies.setdefault(path, set()).add(resp.content)
    assert all(len(b) == 1 for b in bodies.values()), bodies
    async with producer(tenants) as p:
        still = (await p.get("/api/v1/processes/pb")).json()
    assert still["status"] == "running"


async def test_an_admin_token_does_not_make_a_producer(tenants: Live) -> None:
    async with admin(tenants) as a:
        calls = [
            await a.post("/api/v1/processes", json={"id": "new", "name": NAME}),
            await a.patch("/api/v1/processes/pb", json={"expect_more": False}),
            await a.post("/api/v1/processes/pb/complete"),
            await a.post("/api/v1/processes/pb/fail"),
            await a.post("/api/v1/tasks", json=step("z1", "pz")),
        ]
    for resp in calls:
        assert_error(resp, 401, "invalid_producer_key")


async def test_another_tenant_s_instance_answers_like_a_missing_one(tenants: Live) -> None:
    async with producer(tenants) as p:
        await three_instances(p)
    async with admin(tenants, tenant=ACME) as a:
        theirs = await a.get("/api/v1/processes/pb")
        missing = await a.get("/api/v1/processes/zz")
        cancel_theirs = await a.post("/api/v1/processes/pb/cancel")
        cancel_missing = await a.post("/api/v1/processes/zz/cancel")
        switch_theirs = await a.post(f"/api/v1/process-definitions/{NAME}/disable")
        switch_missing = await a.post("/api/v1/process-definitions/Zz/disable")
        listed = (await a.get("/api/v1/processes")).json()
        stats = (await a.get("/api/v1/processes/stats")).json()
        definitions = (await a.get("/api/v1/process-definitions")).json()
    assert_error(theirs, 404, "process_not_found")
    assert (theirs.status_code, theirs.json()["error"]["code"]) == (
        missing.status_code,
        missing.json()["error"]["code"],
    )
    assert theirs.json()["error"]["message"] == missing.json()["error"]["message"].replace(
        "zz", "pb"
    )
    assert cancel_theirs.status_code == cancel_missing.status_code == 404
    assert switch_theirs.status_code == switch_missing.status_code == 404
    assert listed == {"instances": [], "next_cursor": None}
    assert stats["processes"] == [] and sum(stats["overall"]["counts"].values()) == 0
    assert definitions == {"processes": []}
    async with producer(tenants) as p:
        assert (await p.get("/api/v1/processes/pb")).json()["status"] == "running"
        defs = (await p.get("/api/v1/process-definitions")).json()["processes"]
    assert defs == [{"name": NAME, "disabled": False}]


# ---------------------------------------------------------------- bad input


BAD_QUERIES: list[tuple[dict[str, str] | str, str]] = [
    ({"status": "done"}, "bad_query"),
    ({"status": "running,"}, "bad_query"),
    ({"limit": "0"}, "bad_query"),
    ({"limit": "201"}, "bad_query"),
    ({"limit": "ten"}, "bad_query"),
    ({"limit": "\uff11"}, "bad_query"),  # a full-width digit: isdigit() says yes
    ({"limit": "9" * 5000}, "bad_query"),
    ({"from": "2026-01-01T00:00:00"}, "bad_query"),  # no zone
    ({"to": "yesterday"}, "bad_query"),
    ({"definition": "a\u0000b"}, "bad_query"),
    ({"definition": "x" * 201}, "bad_query"),
    ({"stauts": "running"}, "bad_query"),  # a typo must not list everything
    ("status=running&status=error", "bad_query"),
    ({"cursor": "not-a-cursor"}, "bad_cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"garbage|x").decode()}, "bad_cursor"),
]


@pytest.mark.parametrize(("query", "code"), BAD_QUERIES)
async def test_a_bad_listing_query_is_400(
    embedded: Live, query: dict[str, str] | str, code: str
) -> None:
    async with admin(embedded) as a:
        if isinstance(query, str):
            resp = await a.get(f"/api/v1/processes?{query}")
        else:
            resp = await a.get("/api/v1/processes", params=query)
    assert_error(resp, 400, code)


@pytest.mark.parametrize(
    "roles",
    ["process-admin", [1], ["process admin"], [""], ["r"] * 33, {"process-admin": True}],
)
async def test_a_malformed_roles_claim_is_an_invalid_token(embedded: Live, roles: Any) -> None:
    async with admin(embedded, roles=roles) as a:
        resp = await a.get("/api/v1/processes")
    assert_error(resp, 401, "invalid_token")


async def test_expired_revoked_and_missing_credentials_are_401(embedded: Live) -> None:
    expired = admin_token(iat=int(time.time()) - 900, exp=int(time.time()) - 600)
    async with httpx.AsyncClient(base_url=embedded.base_url) as c:
        none = await c.get("/api/v1/processes")
        old = await c.get("/api/v1/processes", headers={"Authorization": f"Bearer {expired}"})
    async with producer(embedded) as p:
        await p.post(f"/api/v1/users/{ADMIN}/revoke")
    async with admin(embedded, iat=int(time.time()) - 5) as a:
        revoked = await a.get("/api/v1/processes")
    assert_error(none, 401, "missing_credentials")
    assert_error(old, 401, "token_expired")
    assert_error(revoked, 401, "token_revoked")


async def test_the_producer_lists_instances_too(embedded: Live) -> None:
    async with producer(embedded) as p:
        await p.post("/api/v1/processes", json={"id": "solo", "name": NAME})
        got = await p.get("/api/v1/processes", params={"status": "running", "limit": "1"})
    assert [r["id"] for r in got.json()["instances"]] == ["solo"]
    assert got.json()["next_cursor"] is not None


async def test_demo_mode_makes_carol_a_process_admin(sqlite_url: str) -> None:
    made_up = ("TASKBELL_SECRET", "TASKBELL_PRODUCER_KEYS")
    settings = make_settings(sqlite_url, demo=True, made_up=made_up)
    async with serve(settings) as live, httpx.AsyncClient(base_url=live.base_url) as c:
        tokens = {
            u: (await c.post("/api/v1/demo/token", json={"user": u})).json()["token"]
            for u in ("alice", "carol")
        }
        answers = {
            u: await c.get("/api/v1/processes", headers={"Authorization": f"Bearer {tok}"})
            for u, tok in tokens.items()
        }
    assert answers["carol"].status_code == 200
    assert_error(answers["alice"], 403, "process_admin_required")


def test_minted_tokens_carry_roles_only_when_asked() -> None:
    plain = jwt.decode(mint_token(SECRET, "a", 60), SECRET, algorithms=["HS256"])
    admin_claims = jwt.decode(
        mint_token(SECRET, "a", 60, roles=[PROCESS_ADMIN]), SECRET, algorithms=["HS256"]
    )
    assert "roles" not in plain and admin_claims["roles"] == [PROCESS_ADMIN]


def _token_command(*args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASKBELL_")}
    env = {**clean, "TASKBELL_SECRET": SECRET, "TASKBELL_PRODUCER_KEYS": "k"}
    return subprocess.run(
        [sys.executable, "-m", "server", "token", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_token_command_mints_a_process_admin_of_a_tenant() -> None:
    made = _token_command(ADMIN, "--role", PROCESS_ADMIN, "--tenant", ACME)
    refused = _token_command(ADMIN, "--role", "process admin")
    assert made.returncode == 0, made.stderr
    claims = jwt.decode(made.stdout.strip().splitlines()[-1], SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["tid"], claims["roles"]) == (ADMIN, ACME, [PROCESS_ADMIN])
    assert refused.returncode == 2 and "not a role name" in refused.stderr
