"""Producer-side helpers many tests share: a task body and the JSON error check."""

from __future__ import annotations

from typing import Any

import httpx


def task_body(tid: str = "t-1", owner: str = "alice", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": tid,
        "owner": owner,
        "title": f"Approve {tid}",
        "kind": "activity",
        # one instance per task: an instance ends by itself when its last step does
        "process": {"instance_id": f"p-{tid}", "name": "Invoice approval"},
        "record": {"entity": "Account", "id": "acc-1", "title": "Acme"},
        "url": f"https://crm.example/pages/approve?task={tid}",
    }
    body.update(kw)
    return body


def assert_error(resp: httpx.Response, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in resp.text
    if code is not None:
        assert err["code"] == code, err
