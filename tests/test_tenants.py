"""Tenants over HTTP: with the same task, user, role, instance and substitution ids in two
tenants, another tenant's thing answers exactly like one that exists nowhere (same
status, same JSON body), and nothing one tenant does changes the other's data."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from server.feeds import DEFAULT_TENANT
from server.settings import Settings
from tests.support.app import SECRET, Live, serve
from tests.support.audiences import (
    ACME,
    feed_counts,
    person,
    producer,
    queue_body,
    substitution_body,
    two_tenants,
    user_token,
)
from tests.support.tasks import assert_error, task_body

PROCESS = "invoice-approval"
LATER = "2099-01-01T00:00:00Z"


@pytest.fixture
async def tenants(backend: Settings) -> AsyncIterator[Live]:
    async with serve(two_tenants(backend)) as running:
        yield running


def answer(resp: httpx.Response) -> tuple[int, Any]:
    """What a caller can tell from a response: its status and its JSON body (or, for a
    redirect, where it points)."""
    if resp.is_redirect:
        return resp.status_code, resp.headers["location"]
    return resp.status_code, resp.json()


async def probe(live: Live, tenant: str, n: str, user: str) -> dict[str, tuple[int, Any]]:
    """Every call of ``tenant`` naming the things numbered ``n`` (task ``t-n``, queue
    task ``q-n``, instance ``p-n``, role ``r-n``, substitution ``s-n``, process
    ``PROCESS-n``), as the tenant's producer and as its person ``user``. None of them
    creates anything."""
    t, q, p, r, s, name = f"t-{n}", f"q-{n}", f"p-{n}", f"r-{n}", f"s-{n}", f"{PROCESS}-{n}"
    out: dict[str, tuple[int, Any]] = {}
    async with producer(live, tenant) as c:
        for tid in (t, q):
            out[f"get {tid}"] = answer(await c.get(f"/api/v1/tasks/{tid}"))
            out[f"patch {tid}"] = answer(await c.patch(f"/api/v1/tasks/{tid}", json={"title": "x"}))
            for verb in ("complete", "cancel", "resume", "unclaim"):
                out[f"{verb} {tid}"] = answer(await c.post(f"/api/v1/tasks/{tid}/{verb}"))
            out[f"postpone {tid}"] = answer(
                await c.post(f"/api/v1/tasks/{tid}/postpone", json={"until": LATER})
            )
            out[f"claim {tid}"] = answer(
                await c.post(f"/api/v1/tasks/{tid}/claim", json={"user": user})
            )
            out[f"open {tid}"] = answer(await c.get(f"/api/v1/tasks/{tid}/open"))
            out[f"history {tid}"] = answer(await c.get(f"/api/v1/tasks/{tid}/history"))
        ops = [
            {"op": "update", "id": t, "changes": {"owner": "mallory"}},
            {"op": "postpone", "id": t, "until": LATER},
            {"op": "resume", "id": t},
            {"op": "complete", "id": q},
            {"op": "cancel", "id": t},
        ]
        out["batch"] = answer(await c.post("/api/v1/tasks/batch", json={"ops": ops}))
        out["get process"] = answer(await c.get(f"/api/v1/processes/{p}"))
        out["patch process"] = answer(
            await c.patch(f"/api/v1/processes/{p}", json={"expect_more": False})
        )
        for verb in ("complete", "fail", "cancel"):
            out[f"{verb} process"] = answer(await c.post(f"/api/v1/processes/{p}/{verb}"))
        out["definitions"] = answer(await c.get("/api/v1/process-definitions"))
        for verb in ("disable", "enable"):
            out[verb] = answer(await c.post(f"/api/v1/process-definitions/{name}/{verb}"))
        out["stats"] = answer(await c.get("/api/v1/processes/stats"))
        out["stats by name"] = answer(await c.get("/api/v1/processes/stats", params={"name": name}))
        out["get role"] = answer(await c.get(f"/api/v1/roles/{r}"))
        out["substitutions"] = answer(await c.get("/api/v1/substitutions"))
        for who in (user, "sub-" + user):
            out[f"substitutions of {who}"] = answer(
                await c.get("/api/v1/substitutions", params={"user": who})
            )
        out["delete substitution"] = answer(await c.delete(f"/api/v1/substitutions/{s}"))
    async with person(live, user, tenant) as c:
        for tid in (t, q):
            for verb in ("complete", "cancel", "resume", "claim", "unclaim"):
                out[f"{user} {verb} {tid}"] = answer(await c.post(f"/api/v1/tasks/{tid}/{verb}"))
            out[f"{user} postpone {tid}"] = answer(
                await c.post(f"/api/v1/tasks/{tid}/postpone", json={"until": LATER})
            )
            out[f"{user} open {tid}"] = answer(await c.get(f"/api/v1/tasks/{tid}/open"))
            out[f"{user} history {tid}"] = answer(await c.get(f"/api/v1/tasks/{tid}/history"))
            link = {"token": user_token(user, tenant)}  # a link followed by a browser
            out[f"{user} link {tid}"] = answer(
                await c.get(f"/api/v1/tasks/{tid}/open", params=link, headers={"Authorization": ""})
            )
        for status in ("running", "all"):
            for feeds in ("own", "all"):
                out[f"{user} tasks {status} {feeds}"] = answer(
                    await c.get("/api/v1/me/tasks", params={"status": status, "feeds": feeds})
                )
        out[f"{user} counter"] = answer(await c.get("/api/v1/me/counter"))
        out[f"{user} counts"] = answer(await c.get("/api/v1/me/counts"))
        out[f"{user} record"] = answer(await c.get(f"/api/v1/records/Account/acc-{n}/tasks"))
    async with person(live, f"sub-{user}", tenant) as c:  # a member, and the stand-in
        out["substitute's tasks"] = answer(
            await c.get("/api/v1/me/tasks", params={"status": "all", "feeds": "all"})
        )
        out["substitute's counter"] = answer(await c.get("/api/v1/me/counter"))
        out["substitute completes"] = answer(await c.post(f"/api/v1/tasks/{t}/complete"))
        out["substitute claims"] = answer(await c.post(f"/api/v1/tasks/{q}/claim"))
    limited = [k for k, (status, _) in out.items() if status in (429, 500, 503)]
    assert limited == [], "a probe must compare real answers"
    return out


async def seed(live: Live, tenant: str, n: str, user: str, title: str = "Approve") -> None:
    """The things numbered ``n`` in ``tenant``: ``user``'s task, a queue task of role
    ``r-n`` (``user`` and ``sub-<user>`` its members), a postponed task, an instance of
    ``PROCESS-n`` with them as steps, a disabled definition, a substitution, a revoked
    person."""
    name = f"{PROCESS}-{n}"
    process = {"instance_id": f"p-{n}", "name": name}
    record = {"entity": "Account", "id": f"acc-{n}", "title": "Acme"}
    async with producer(live, tenant) as c:
        started = await c.post(
            "/api/v1/processes", json={"id": f"p-{n}", "name": name, "expect_more": True}
        )
        assert started.status_code == 201, started.text
        members = await c.put(
            f"/api/v1/roles/r-{n}/members", json={"members": [user, f"sub-{user}"]}
        )
        assert members.status_code == 200, members.text
        for body in (
            task_body(f"t-{n}", user, title=f"{title} t", process=process, record=record),
            queue_body(f"q-{n}", f"r-{n}", title=f"{title} q", process=process, record=record),
            task_body(f"w-{n}", user, title=f"{title} w", process=process, postponed_until=LATER),
        ):
            created = await c.post("/api/v1/tasks", json=body)
            assert created.status_code == 201, created.text
        sub = substitution_body(f"s-{n}", user, f"sub-{user}")
        assert (await c.post("/api/v1/substitutions", json=sub)).status_code == 201
        # a second instance, ended, so that the statistics have something to count
        other = {"id": f"p-{n}-done", "name": name}
        assert (await c.post("/api/v1/processes", json=other)).status_code == 201
        assert (await c.post(f"/api/v1/processes/p-{n}-done/complete")).status_code == 200
        assert (await c.post(f"/api/v1/process-definitions/{name}-x/disable")).status_code == 404


@pytest.mark.parametrize(("owner", "other"), [(DEFAULT_TENANT, ACME), (ACME, DEFAULT_TENANT)])
async def test_another_tenants_things_answer_exactly_like_missing_ones(
    tenants: Live, owner: str, other: str
) -> None:
    # What ``other`` is told about things that exist nowhere...
    nowhere = await probe(tenants, other, "1", "alice")
    not_found = [k for k, (status, _) in nowhere.items() if status == 404]
    assert len(not_found) >= 40, sorted(nowhere.items())  # the probe does reach the checks
    # ...then they exist in ``owner`` (with the same user ids)...
    await seed(tenants, owner, "1", "alice")
    # ...and ``other`` is told exactly the same as before, call by call.
    after = await probe(tenants, other, "1", "alice")
    assert {k: v for k, v in after.items() if v != nowhere[k]} == {}
    # The owning tenant does see its things (the probe is not blind).
    seen = await probe(tenants, owner, "1", "alice")
    assert seen["get t-1"][0] == 200
    assert seen["get role"] == (200, {"id": "r-1", "members": ["alice", "sub-alice"]})
    assert seen["complete t-1"][0] == 200
    assert seen["alice tasks all all"][0] == 200, seen["alice tasks all all"]
    assert len(seen["alice tasks all all"][1]["tasks"]) == 3
    assert seen["get process"][0] == 200
    assert seen["history t-1"][0] == 200 and seen["history t-1"][1]["changes"]


async def test_the_same_ids_in_two_tenants_are_two_different_things(tenants: Live) -> None:
    await seed(tenants, DEFAULT_TENANT, "1", "alice", title="Default")
    async with person(tenants, "alice") as alice, person(tenants, "sub-alice") as sub:
        before_alice = await feed_counts(alice)
        before_sub = await feed_counts(sub)
        before_tasks = (await alice.get("/api/v1/me/tasks", params={"feeds": "all"})).json()
        before_counts = (await alice.get("/api/v1/me/counts")).json()
    async with producer(tenants) as c:
        before = {
            tid: (await c.get(f"/api/v1/tasks/{tid}")).json() for tid in ("t-1", "q-1", "w-1")
        }
        before_history = {
            tid: (await c.get(f"/api/v1/tasks/{tid}/history")).json()
            for tid in ("t-1", "q-1", "w-1")
        }
        before_process = (await c.get("/api/v1/processes/p-1")).json()
        before_stats = (await c.get("/api/v1/processes/stats")).json()
        before_defs = (await c.get("/api/v1/process-definitions")).json()
        before_subs = (await c.get("/api/v1/substitutions", params={"user": "alice"})).json()
    assert before_alice["user:alice"] == 1 and before_alice["role:r-1"] == 1
    assert before_sub["user:alice"] == 1, "sub-alice stands in for alice in default"

    # acme makes the same ids: each is new there (201), whatever default holds
    await seed(tenants, ACME, "1", "alice", title="Acme")
    async with person(tenants, "alice", ACME) as acme_alice:
        acme_alice_before = await feed_counts(acme_alice)
    async with producer(tenants, ACME) as c:
        got = (await c.get("/api/v1/tasks/t-1")).json()
        assert got["title"] == "Acme t"
        other = substitution_body("s-1", "alice", "carol")
        assert_error(await c.post("/api/v1/substitutions", json=other), 409)
        # and acts on them in every way it can
        members = await c.put("/api/v1/roles/r-1/members", json={"members": ["zed"]})
        assert members.json() == {"id": "r-1", "members": ["zed"]}
        assert (await c.patch("/api/v1/tasks/t-1", json={"owner": "sub-alice"})).status_code == 200
        assert (await c.post("/api/v1/tasks/q-1/claim", json={"user": "zed"})).status_code == 200
        assert (await c.post("/api/v1/tasks/w-1/resume")).status_code == 200
        assert (await c.post("/api/v1/tasks/w-1/complete")).status_code == 200
        assert (await c.post("/api/v1/tasks/t-1/cancel")).status_code == 200
        assert (await c.post("/api/v1/processes/p-1/fail")).status_code == 200
        disable = await c.post(f"/api/v1/process-definitions/{PROCESS}-1/disable")
        assert disable.status_code == 200, disable.text
        assert (await c.delete("/api/v1/substitutions/s-1")).status_code == 200
        revoked = await c.post("/api/v1/users/alice/revoke")
        assert revoked.status_code == 200
        ops = [{"op": "create", "task": task_body("t-9", "alice")}, {"op": "cancel", "id": "q-1"}]
        batch = await c.post("/api/v1/tasks/batch", json={"ops": ops})
        assert [r["status"] for r in batch.json()["results"]] == [201, 200]
    assert acme_alice_before["user:alice"] == 1

    # default's things are as they were
    async with person(tenants, "alice") as alice, person(tenants, "sub-alice") as sub:
        assert await feed_counts(alice) == before_alice
        assert await feed_counts(sub) == before_sub
        after_tasks = (await alice.get("/api/v1/me/tasks", params={"feeds": "all"})).json()
        assert after_tasks == before_tasks
        assert (await alice.get("/api/v1/me/counts")).json() == before_counts
    async with producer(tenants) as c:
        for tid, task in before.items():
            assert (await c.get(f"/api/v1/tasks/{tid}")).json() == task
            history = (await c.get(f"/api/v1/tasks/{tid}/history")).json()
            assert history == before_history[tid]
        assert_error(await c.get("/api/v1/tasks/t-9"), 404, "task_not_found")
        assert (await c.get("/api/v1/processes/p-1")).json() == before_process
        assert (await c.get("/api/v1/processes/stats")).json() == before_stats
        assert (await c.get("/api/v1/process-definitions")).json() == before_defs
        role = (await c.get("/api/v1/roles/r-1")).json()
        assert role == {"id": "r-1", "members": ["alice", "sub-alice"]}
        subs = (await c.get("/api/v1/substitutions", params={"user": "alice"})).json()
        assert subs == before_subs and len(subs["substitutions"]) == 1
        # default may start a new instance of the process acme disabled
        fresh = await c.post("/api/v1/processes", json={"id": "p-new", "name": f"{PROCESS}-1"})
        assert fresh.status_code == 201, fresh.text
    # acme's changes did happen, in acme
    async with producer(tenants, ACME) as c:
        assert (await c.get("/api/v1/tasks/t-1")).json()["status"] == "canceled"
        assert (await c.get("/api/v1/tasks/q-1")).json()["owner"] == "zed"
        defs = (await c.get("/api/v1/process-definitions")).json()["processes"]
        assert {"name": f"{PROCESS}-1", "disabled": True} in defs
        refused = await c.post("/api/v1/processes", json={"id": "p-new", "name": f"{PROCESS}-1"})
        assert_error(refused, 409, "process_disabled")


async def test_revoking_a_person_in_one_tenant_leaves_the_same_id_in_the_other(
    tenants: Live,
) -> None:
    default_token, acme_token = user_token("alice"), user_token("alice", ACME)
    headers = {
        DEFAULT_TENANT: {"Authorization": f"Bearer {default_token}"},
        ACME: {"Authorization": f"Bearer {acme_token}"},
    }
    async with httpx.AsyncClient(base_url=tenants.base_url) as c:
        for h in headers.values():
            assert (await c.get("/api/v1/me/counter", headers=h)).status_code == 200
        async with producer(tenants, ACME) as acme:
            assert (await acme.post("/api/v1/users/alice/revoke")).status_code == 200
        assert_error(await c.get("/api/v1/me/counter", headers=headers[ACME]), 401, "token_revoked")
        assert (
            await c.get("/api/v1/me/counter", headers=headers[DEFAULT_TENANT])
        ).status_code == 200


async def test_counters_and_events_stay_in_their_tenant(tenants: Live) -> None:
    async with producer(tenants) as d, producer(tenants, ACME) as a:
        for i in range(3):
            assert (await d.post("/api/v1/tasks", json=task_body(f"t-{i}"))).status_code == 201
        assert (await a.post("/api/v1/tasks", json=task_body("t-0", title="A"))).status_code == 201
        assert (await a.post("/api/v1/tasks/t-0/complete")).status_code == 200
    async with person(tenants, "alice") as da, person(tenants, "alice", ACME) as aa:
        d_counter = (await da.get("/api/v1/me/counter")).json()
        a_counter = (await aa.get("/api/v1/me/counter")).json()
        d_tasks = [t["id"] for t in (await da.get("/api/v1/me/tasks")).json()["tasks"]]
        a_all = (await aa.get("/api/v1/me/tasks", params={"status": "all"})).json()["tasks"]
        a_counts = (await aa.get("/api/v1/me/counts")).json()
    assert (d_counter["count"], d_counter["seq"]) == (3, 3)
    assert (a_counter["count"], a_counter["seq"]) == (0, 2)
    assert sorted(d_tasks) == ["t-0", "t-1", "t-2"]
    assert [(t["id"], t["status"], t["title"]) for t in a_all] == [("t-0", "completed", "A")]
    assert a_counts == {"running": 0, "postponed": 0, "completed": 1, "canceled": 0}


def _raw_token(**claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + 600, **claims}, SECRET, "HS256")


@pytest.mark.parametrize(
    "tid", ["a/b", "", " acme", "acme ", "-acme", "x" * 65, 7, None, ["acme"], {"t": 1}, True]
)
async def test_a_token_whose_tid_is_no_tenant_name_is_401(embedded: Live, tid: Any) -> None:
    bad = _raw_token(tid=tid)
    async with httpx.AsyncClient(
        base_url=embedded.base_url, headers={"Authorization": f"Bearer {bad}"}
    ) as c:
        for path in ("/api/v1/me/counter", "/api/v1/me/tasks", "/api/v1/me/counts"):
            assert_error(await c.get(path), 401, "invalid_token")
        assert_error(await c.post("/api/v1/tasks/t-1/complete"), 401, "invalid_token")


async def test_a_token_of_a_named_tenant_works_and_the_key_binds_its_tenant(
    tenants: Live,
) -> None:
    good = _raw_token(tid=ACME)
    async with httpx.AsyncClient(
        base_url=tenants.base_url, headers={"Authorization": f"Bearer {good}"}
    ) as c:
        assert (await c.get("/api/v1/me/counter")).status_code == 200
    async with producer(tenants, ACME) as a:
        assert (await a.post("/api/v1/tasks", json=task_body("only-acme"))).status_code == 201
    async with producer(tenants) as d:
        assert_error(await d.get("/api/v1/tasks/only-acme"), 404, "task_not_found")
    # a key of the form tenant=key is only that key: "acme=pk-acme-0123456" is no key
    async with httpx.AsyncClient(
        base_url=tenants.base_url, headers={"Authorization": "Bearer acme=pk-acme-0123456"}
    ) as c:
        assert_error(await c.get("/api/v1/tasks/only-acme"), 401, "invalid_producer_key")
