"""The engine's webhook endpoint: registered at start, signatures checked (Standard
Webhooks), and a repeated or out-of-order delivery never completes a step twice."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from engine.app import WEBHOOK_PATH
from tests.engine.support import (
    EngineHandle,
    People,
    engine_config,
    eventually,
    serve_engine,
)
from tests.support.app import Live


def _signed(secret: str, msg_id: str, payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(payload)
    stamp = int(time.time())
    signature = Webhook(secret).sign(msg_id, _dt(stamp), body.decode())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return body, headers


def _dt(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


async def test_registers_its_endpoint_once(engine: EngineHandle, taskbell: Live) -> None:
    async with taskbell.producer() as c:
        endpoints = (await c.get("/api/v1/webhooks")).json()["endpoints"]
    assert [(e["url"], e["events"], e["enabled"]) for e in endpoints] == [
        (engine.base_url + WEBHOOK_PATH, ["task.canceled", "task.completed"], True)
    ]
    assert engine.runtime.endpoint_id == endpoints[0]["id"]


async def test_restart_keeps_the_endpoint_and_a_lost_secret_replaces_it(
    taskbell: Live, tmp_path: Path
) -> None:
    config = engine_config(taskbell.base_url, tmp_path / "a.db")
    async with serve_engine(config) as first:
        first_id = first.runtime.endpoint_id
    async with serve_engine(config) as again:
        assert again.runtime.endpoint_id == first_id
    # A new ENGINE_DB on the same url: the old endpoint (secret unknown) is replaced.
    fresh = engine_config(taskbell.base_url, tmp_path / "b.db", port=config.port)
    async with serve_engine(fresh) as other:
        assert other.runtime.endpoint_id != first_id
        async with taskbell.producer() as c:
            endpoints = (await c.get("/api/v1/webhooks")).json()["endpoints"]
        assert [e["id"] for e in endpoints] == [other.runtime.endpoint_id]


async def test_a_bad_signature_is_refused(engine: EngineHandle, people: People) -> None:
    iid = await engine.start("invoice_approval")
    approve = await people.wait_task("bob", iid, "approve_invoice")
    payload = {
        "type": "task.completed",
        "timestamp": "2026-12-01T00:00:00.000000Z",
        "data": {**approve, "status": "completed", "actor": "mallory"},
    }
    url = engine.base_url + WEBHOOK_PATH
    wrong = Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
    body, headers = _signed("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY", "msg_forged", payload)
    assert wrong.verify(body, headers)  # well-formed, just not Taskbell's secret
    async with httpx.AsyncClient(trust_env=False) as c:
        assert (await c.post(url, content=body, headers=headers)).status_code == 401
        unsigned = {"content-type": "application/json", "webhook-id": "msg_x"}
        assert (await c.post(url, content=body, headers=unsigned)).status_code == 401
        odd: dict[str, Any] = {**headers, "webhook-signature": "v1,\u00e9t\u00e9".encode()}
        assert (await c.post(url, content=body, headers=odd)).status_code == 401
        # The real secret but an old timestamp (a replay) is refused too.
        secret = engine.runtime.secret
        assert secret is not None
        body, headers = _signed(secret, "msg_old", payload)
        headers["webhook-timestamp"] = str(int(time.time()) - 3600)
        stale = Webhook(secret).sign(
            "msg_old", _dt(int(headers["webhook-timestamp"])), body.decode()
        )
        headers["webhook-signature"] = stale
        assert (await c.post(url, content=body, headers=headers)).status_code == 401
    view = await engine.view(iid)
    assert [s["status"] for s in view["steps"]] == ["open"]
    assert len(await people.running("bob")) == 1


async def test_repeated_and_out_of_order_deliveries_complete_a_step_once(
    engine: EngineHandle, people: People, taskbell: Live
) -> None:
    iid = await engine.start("invoice_approval")
    approve = await people.wait_task("bob", iid, "approve_invoice")
    await people.complete("bob", approve["id"], "approve")
    told = await people.wait_task("alice", iid, "tell_approved")

    endpoint = engine.runtime.endpoint_id
    async with taskbell.producer() as c:
        log = (await c.get(f"/api/v1/webhooks/{endpoint}/deliveries")).json()["deliveries"]
        first = next(d for d in log if d["task_id"] == approve["id"])
        assert first["status"] == "delivered"
        # Taskbell sends the same delivery again (same webhook-id) ...
        again = await c.post(f"/api/v1/webhooks/{endpoint}/deliveries/{first['id']}/redeliver")
        assert again.status_code == 202

        async def delivered_twice() -> bool:
            one = (await c.get(f"/api/v1/webhooks/{endpoint}/deliveries/{first['id']}")).json()
            return bool(one["status"] == "delivered" and one["attempts"] >= 2)

        await eventually(delivered_twice, what="the redelivery landed")

    # ... and a late completion of the same step under another id (out of order, after
    # the step it led to exists): both are dropped.
    secret = engine.runtime.secret
    assert secret is not None
    payload = {
        "type": "task.completed",
        "timestamp": "2026-12-01T00:00:00.000000Z",
        "data": {**approve, "status": "completed", "actor": "bob"},
    }
    body, headers = _signed(secret, "msg_late_copy", payload)
    async with httpx.AsyncClient(trust_env=False) as c:
        resp = await c.post(engine.base_url + WEBHOOK_PATH, content=body, headers=headers)
    assert resp.status_code == 200
    assert resp.json()["note"] == "step already completed"

    await asyncio.sleep(0.3)
    view = await engine.view(iid)
    assert [(s["id"], s["status"]) for s in view["steps"]] == [
        (approve["id"], "completed"),
        (told["id"], "open"),
    ]
    assert [t["id"] for t in await people.running("alice")] == [told["id"]]
    process = await people.process(iid)
    assert len(process["steps"]) == 2


async def test_a_step_canceled_in_taskbell_cancels_the_instance(
    engine: EngineHandle, people: People
) -> None:
    iid = await engine.start("invoice_approval")
    approve = await people.wait_task("bob", iid, "approve_invoice")
    async with people.person("bob") as c:
        assert (await c.post(f"/api/v1/tasks/{approve['id']}/cancel")).status_code == 200
    await people.wait_process(iid, "canceled")
    view = await eventually(
        lambda: _status(engine, iid, "canceled"), what="the engine canceled the instance"
    )
    assert view["end_reason"] == f"step {approve['id']} was canceled by bob"


async def _status(engine: EngineHandle, iid: str, status: str) -> dict[str, Any] | None:
    view = await engine.view(iid)
    return view if view["status"] == status else None


async def test_an_outcome_and_comment_in_the_delivery_decide_the_gateway(
    engine: EngineHandle, people: People
) -> None:
    """The producer (another system) decides for the queue: Taskbell's delivery carries
    the outcome and comment, which go into the instance data and decide the gateway."""
    iid = await engine.start("invoice_approval", invoice_id="INV-11")
    approve = await people.wait_task("bob", iid, "approve_invoice")
    async with people.producer() as c:
        decided = await c.post(
            f"/api/v1/tasks/{approve['id']}/complete",
            json={"outcome": "reject", "comment": "duplicate invoice"},
        )
    assert decided.status_code == 200, decided.text
    told = await people.wait_task("alice", iid, "tell_rejected")
    assert told["title"] == "Invoice INV-11 rejected: duplicate invoice"
    view = await engine.view(iid)
    assert view["data"]["outcome"] == "reject" and view["data"]["decision"] == "reject"
    assert view["data"]["comment"] == "duplicate invoice"
    # Nobody in particular completed it (completed_by null, nobody claimed): no hand-off.
    assert view["data"]["completed_by"] is None
    assert [s["follows"] for s in view["steps"]] == [None, None]
    assert told["follows"] is None
