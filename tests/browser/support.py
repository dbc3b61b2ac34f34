"""What the browser tests drive besides the page: a producer (the process engine) and a
person's own HTTP view, both over the real HTTP API of a real server process."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

import httpx

from server.auth import mint_token

SECRET = "browser-tests-secret-0123456789abcdef-0123456789"
PRODUCER_KEY = "pk-browser-tests"

TaskBody = dict[str, Any]


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def user_token(user: str, secret: str = SECRET) -> str:
    return mint_token(secret, user, 3600)


class Producer:
    """The process engine's side of the API, authenticated with a producer key."""

    def __init__(self, base_url: str, key: str = PRODUCER_KEY) -> None:
        self.client = httpx.Client(
            base_url=f"{base_url}/api/v1",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10.0,
        )

    def _ok(self, response: httpx.Response) -> Any:
        assert response.is_success, (
            f"{response.request.url}: {response.status_code} {response.text}"
        )
        return response.json()

    def create(
        self,
        owner: str,
        title: str = "Approve invoice INV-7",
        *,
        task_id: str | None = None,
        kind: str = "activity",
        process: str | None = "Invoice approval",
        instance: str | None = None,
        record: tuple[str, str, str] | None = ("Account", "acc-1", "Acme"),
        url: str | None = None,
        **work: Any,
    ) -> TaskBody:
        """``work``: work-surface fields as the wire names them (``due_at``,
        ``priority``, ``actions``, ``follows``); a ``datetime`` due time is sent as
        ISO-8601."""
        body = self.task_body(
            owner,
            title,
            task_id=task_id,
            kind=kind,
            process=process,
            instance=instance,
            record=record,
            url=url,
        )
        if isinstance(work.get("due_at"), datetime):
            work["due_at"] = work["due_at"].isoformat()
        created: TaskBody = self._ok(self.client.post("/tasks", json={**body, **work}))
        return created

    @staticmethod
    def task_body(
        owner: str,
        title: str,
        *,
        task_id: str | None = None,
        kind: str = "activity",
        process: str | None = "Invoice approval",
        instance: str | None = None,
        record: tuple[str, str, str] | None = ("Account", "acc-1", "Acme"),
        url: str | None = None,
    ) -> TaskBody:
        tid = task_id or new_id()
        return {
            "id": tid,
            "owner": owner,
            "title": title,
            "kind": kind,
            "process": (
                {"instance_id": instance or f"p-{tid}", "name": process} if process else None
            ),
            "record": (
                {"entity": record[0], "id": record[1], "title": record[2]} if record else None
            ),
            "url": url if url is not None else f"https://crm.example/pages/{tid}",
        }

    def complete(self, task_id: str) -> TaskBody:
        done: TaskBody = self._ok(self.client.post(f"/tasks/{task_id}/complete"))
        return done

    def start_process(self, name: str = "Invoice approval") -> str:
        """``POST /processes`` with ``expect_more``: an instance whose steps come one after
        the other (it does not end when one is done). Returns its id."""
        instance = new_id("p")
        body = {"id": instance, "name": name, "expect_more": True}
        self._ok(self.client.post("/processes", json=body))
        return instance

    def next_step(self, after: TaskBody, owner: str, title: str, **fields: Any) -> TaskBody:
        """The step of ``after``'s instance that comes after it (``follows``)."""
        process = after.get("process") or {}
        return self.create(
            owner,
            title,
            instance=process.get("instance_id"),
            process=str(process.get("name", "Invoice approval")),
            follows=after["id"],
            **fields,
        )

    def cancel(self, task_id: str) -> TaskBody:
        canceled: TaskBody = self._ok(self.client.post(f"/tasks/{task_id}/cancel"))
        return canceled

    def postpone(self, task_id: str, until: datetime) -> TaskBody:
        body = {"until": until.isoformat()}
        postponed: TaskBody = self._ok(self.client.post(f"/tasks/{task_id}/postpone", json=body))
        return postponed

    def update(self, task_id: str, **changes: Any) -> TaskBody:
        updated: TaskBody = self._ok(self.client.patch(f"/tasks/{task_id}", json=changes))
        return updated

    def batch(self, ops: list[dict[str, Any]]) -> Any:
        return self._ok(self.client.post("/tasks/batch", json={"ops": ops}))

    def set_members(self, role: str, members: list[str]) -> Any:
        """``PUT /roles/{role}/members``: who sees the role's queue."""
        return self._ok(self.client.put(f"/roles/{role}/members", json={"members": members}))

    def create_for_role(
        self, role: str, title: str, *, work: dict[str, Any] | None = None, **fields: Any
    ) -> TaskBody:
        """A task offered to a role's queue (no owner until someone claims it);
        ``work``: work-surface fields (``actions``, ``follows`` …)."""
        body = {
            **self.task_body("nobody", title, **fields),
            **(work or {}),
            "owner": None,
            "role": role,
        }
        created: TaskBody = self._ok(self.client.post("/tasks", json=body))
        return created

    def substitute(self, user: str, substitute: str, *, hours: float = 1.0) -> TaskBody:
        """``POST /substitutions``: ``substitute`` stands in for ``user`` from a minute
        ago for ``hours``."""
        now = datetime.now(UTC)
        body = {
            "id": new_id("sub"),
            "user": user,
            "substitute": substitute,
            "starts_at": (now - timedelta(minutes=1)).isoformat(),
            "ends_at": (now + timedelta(hours=hours)).isoformat(),
        }
        made: TaskBody = self._ok(self.client.post("/substitutions", json=body))
        return made

    def get(self, task_id: str) -> TaskBody:
        task: TaskBody = self._ok(self.client.get(f"/tasks/{task_id}"))
        return task

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


APPROVE_REJECT: list[dict[str, str]] = [
    {"id": "approve", "label": "Approve", "comment": "none"},
    {"id": "reject", "label": "Reject", "comment": "required"},
]
"""The decisions of an approval step: Reject needs a comment."""


class Person:
    """What the server says a person has: the truth the page is compared with."""

    def __init__(self, base_url: str, user: str, secret: str = SECRET) -> None:
        self.client = httpx.Client(
            base_url=f"{base_url}/api/v1",
            headers={"Authorization": f"Bearer {user_token(user, secret)}"},
            timeout=10.0,
        )

    def counter(self) -> tuple[int, int]:
        body = self.client.get("/me/counter").raise_for_status().json()
        return int(body["count"]), int(body["seq"])

    def complete(self, task_id: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """``POST /tasks/{id}/complete`` as the person, with ``body`` as given (to see
        the server refuse a decision that does not fit)."""
        return self.client.post(f"/tasks/{task_id}/complete", json=body)

    def running_ids(self) -> set[str]:
        body = self.client.get("/me/tasks", params={"limit": 200}).raise_for_status().json()
        return {str(t["id"]) for t in body["tasks"]}

    def close(self) -> None:
        self.client.close()
