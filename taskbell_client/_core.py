"""What ``Client`` and ``AsyncClient`` share: each call as a ``Call`` (method, path,
body, query), built once in ``Calls``, whatever sends it; how an answer becomes a result
or an exception; and when to retry."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from taskbell_client.errors import ApiError, error_for

R = TypeVar("R")
JSONObject = dict[str, Any]
Kind = Literal["activity", "email", "edit_record", "page"]
Time = datetime | str
USER_AGENT = "taskbell-client/0.1"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None
    params: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Retry:
    """Retries of answers that say "later" (429 ``rate_limited``, 503 ``unavailable``):
    at most ``attempts`` tries in all; before each retry it waits the server's
    ``Retry-After`` when given, else (and at least) an exponential backoff with full
    jitter (``base * 2**n``, at most ``cap``). A ``Retry-After`` over ``max_wait`` is
    not waited for: the error is raised at once."""

    attempts: int = 4
    base: float = 0.25
    cap: float = 8.0
    max_wait: float = 60.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 503}))

    def delay(self, attempt: int, error: ApiError) -> float | None:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1), or
        None to give up and raise ``error``."""
        if error.status not in self.statuses or attempt >= self.attempts:
            return None
        backoff = random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        if error.retry_after is None:
            return backoff
        if error.retry_after > self.max_wait:
            return None
        # The server's wait, and a little jitter so many clients do not return at once.
        return error.retry_after + random.uniform(0, min(1.0, self.base))


NO_RETRY = Retry(attempts=1)


def when(value: Time) -> str:
    """ISO-8601 text of a time; a datetime must know its zone."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("a time needs its zone (e.g. datetime.now(UTC))")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def seg(value: str) -> str:
    """One path segment, quoted."""
    return quote(value, safe="")


def result(response: httpx.Response) -> JSONObject:
    """The JSON object of a 2xx answer ({} when it has no body); raises the matching
    ``ApiError`` otherwise."""
    if response.is_success:
        if not response.content:
            return {}
        body = response.json()
        return body if isinstance(body, dict) else {"value": body}
    raise error_for(response)


def request(http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
    kwargs: dict[str, Any] = {}
    if call.body is not None:
        kwargs["json"] = call.body
    if call.params:
        kwargs["params"] = dict(call.params)
    return http.build_request(call.method, call.path, **kwargs)


def auth_headers(key: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "User-Agent": USER_AGENT, **(extra or {})}


def _drop_none(values: Mapping[str, Any]) -> JSONObject:
    return {k: v for k, v in values.items() if v is not None}


def _query(values: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v is not None}


class Calls(Generic[R]):
    """Every call of the producer API, once. ``_call`` sends one: ``Client`` returns
    the JSON object, ``AsyncClient`` an awaitable of it."""

    def _call(self, call: Call) -> R:
        raise NotImplementedError

    # ------------------------------------------------------------ tasks

    def create_task(
        self,
        id: str,
        owner: str,
        title: str,
        *,
        kind: Kind = "activity",
        process: Mapping[str, str] | None = None,
        record: Mapping[str, str | None] | None = None,
        url: str | None = None,
        postponed_until: Time | None = None,
    ) -> R:
        """Create a task; repeating it with the same body answers the same task.
        ``process``: ``{"instance_id", "name"}``; ``record``: ``{"entity", "id", "title"?}``.
        Raises ``Conflict`` for the same id with another body."""
        body = Op.create(
            id,
            owner,
            title,
            kind=kind,
            process=process,
            record=record,
            url=url,
            postponed_until=postponed_until,
        )["task"]
        return self._call(Call("POST", "/api/v1/tasks", body))

    def batch(self, ops: Sequence[Mapping[str, Any]]) -> R:
        """Many changes in one transaction; ``{"results": [...]}`` in order, each with
        its own ``status`` and the ``task`` or the ``error``. Ops: ``Op.create(...)``,
        ``Op.update(...)``, ``Op.complete(id)``, ... (or the dicts themselves)."""
        return self._call(Call("POST", "/api/v1/tasks/batch", {"ops": [dict(o) for o in ops]}))

    def get_task(self, id: str) -> R:
        return self._call(Call("GET", f"/api/v1/tasks/{seg(id)}"))

    def patch_task(
        self,
        id: str,
        *,
        title: str | None = None,
        url: str | None = None,
        record: Mapping[str, str | None] | None = None,
        owner: str | None = None,
        postponed_until: Time | None = None,
    ) -> R:
        """Change some fields; a new ``owner`` moves the task to that person's feed."""
        body = _drop_none(
            {
                "title": title,
                "url": url,
                "record": dict(record) if record is not None else None,
                "owner": owner,
                "postponed_until": when(postponed_until) if postponed_until else None,
            }
        )
        return self._call(Call("PATCH", f"/api/v1/tasks/{seg(id)}", body))

    def complete_task(self, id: str) -> R:
        return self._call(Call("POST", f"/api/v1/tasks/{seg(id)}/complete"))

    def cancel_task(self, id: str) -> R:
        return self._call(Call("POST", f"/api/v1/tasks/{seg(id)}/cancel"))

    def resume_task(self, id: str) -> R:
        return self._call(Call("POST", f"/api/v1/tasks/{seg(id)}/resume"))

    def postpone_task(self, id: str, until: Time) -> R:
        return self._call(Call("POST", f"/api/v1/tasks/{seg(id)}/postpone", {"until": when(until)}))

    # ------------------------------------------------------------ processes

    def create_process(self, id: str, name: str, *, expect_more: bool = False) -> R:
        body = {"id": id, "name": name, "expect_more": expect_more}
        return self._call(Call("POST", "/api/v1/processes", body))

    def get_process(self, id: str) -> R:
        """The instance with its steps."""
        return self._call(Call("GET", f"/api/v1/processes/{seg(id)}"))

    def patch_process(self, id: str, *, expect_more: bool) -> R:
        body = {"expect_more": expect_more}
        return self._call(Call("PATCH", f"/api/v1/processes/{seg(id)}", body))

    def _end(self, id: str, verb: str, reason: str | None) -> R:
        body = {"reason": reason} if reason is not None else None
        return self._call(Call("POST", f"/api/v1/processes/{seg(id)}/{verb}", body))

    def complete_process(self, id: str, *, reason: str | None = None) -> R:
        return self._end(id, "complete", reason)

    def fail_process(self, id: str, *, reason: str | None = None) -> R:
        return self._end(id, "fail", reason)

    def cancel_process(self, id: str, *, reason: str | None = None) -> R:
        """End the instance and cancel its open tasks (``canceled_steps`` says how many)."""
        return self._end(id, "cancel", reason)

    def process_stats(
        self, *, name: str | None = None, since: Time | None = None, until: Time | None = None
    ) -> R:
        params = _query(
            {
                "name": name,
                "from": when(since) if since else None,
                "to": when(until) if until else None,
            }
        )
        return self._call(Call("GET", "/api/v1/processes/stats", params=params))

    def process_definitions(self) -> R:
        return self._call(Call("GET", "/api/v1/process-definitions"))

    def disable_process(self, name: str) -> R:
        return self._call(Call("POST", f"/api/v1/process-definitions/{seg(name)}/disable"))

    def enable_process(self, name: str) -> R:
        return self._call(Call("POST", f"/api/v1/process-definitions/{seg(name)}/enable"))

    # ------------------------------------------------------------ webhooks

    def create_webhook(
        self,
        url: str,
        *,
        events: Sequence[str] | None = None,
        owners: Sequence[str] | None = None,
        description: str | None = None,
    ) -> R:
        """Register an endpoint; the answer's ``secret`` (``whsec_...``) is shown only
        here: keep it for ``verify_webhook``."""
        body = _drop_none(
            {
                "url": url,
                "events": list(events) if events is not None else None,
                "owners": list(owners) if owners is not None else None,
                "description": description,
            }
        )
        return self._call(Call("POST", "/api/v1/webhooks", body))

    def list_webhooks(self) -> R:
        return self._call(Call("GET", "/api/v1/webhooks"))

    def get_webhook(self, id: str) -> R:
        return self._call(Call("GET", f"/api/v1/webhooks/{seg(id)}"))

    def patch_webhook(
        self,
        id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        owners: Sequence[str] | None = None,
        description: str | None = None,
        enabled: bool | None = None,
    ) -> R:
        body = _drop_none(
            {
                "url": url,
                "events": list(events) if events is not None else None,
                "owners": list(owners) if owners is not None else None,
                "description": description,
                "enabled": enabled,
            }
        )
        return self._call(Call("PATCH", f"/api/v1/webhooks/{seg(id)}", body))

    def delete_webhook(self, id: str) -> R:
        return self._call(Call("DELETE", f"/api/v1/webhooks/{seg(id)}"))

    def list_deliveries(
        self,
        webhook_id: str,
        *,
        status: Literal["pending", "delivered", "failed", "paused"] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> R:
        """A page of the endpoint's delivery log, newest first (``next_cursor``)."""
        params = _query({"status": status, "limit": limit, "cursor": cursor})
        path = f"/api/v1/webhooks/{seg(webhook_id)}/deliveries"
        return self._call(Call("GET", path, params=params))

    def get_delivery(self, webhook_id: str, delivery_id: str) -> R:
        path = f"/api/v1/webhooks/{seg(webhook_id)}/deliveries/{seg(delivery_id)}"
        return self._call(Call("GET", path))

    def redeliver(self, webhook_id: str, delivery_id: str) -> R:
        path = f"/api/v1/webhooks/{seg(webhook_id)}/deliveries/{seg(delivery_id)}/redeliver"
        return self._call(Call("POST", path))

    # ------------------------------------------------------------ people

    def revoke_user(self, user: str) -> R:
        """Refuse the person's tokens issued until now and close their sockets."""
        return self._call(Call("POST", f"/api/v1/users/{seg(user)}/revoke"))

    def get_preferences(self, user: str) -> R:
        """The person's notification preferences (the defaults until set)."""
        return self._call(Call("GET", f"/api/v1/users/{seg(user)}/preferences"))

    def set_preferences(
        self,
        user: str,
        *,
        desktop: bool = True,
        push: bool = True,
        muted_processes: Sequence[str] = (),
        quiet_hours: tuple[str, str, str] | None = None,
    ) -> R:
        """Replace the person's notification preferences; ``quiet_hours`` is
        ``(start "HH:MM", end "HH:MM", IANA zone)`` or None (docs/protocol.md,
        "Notification preferences")."""
        body: JSONObject = {
            "channels": {"desktop": desktop, "push": push},
            "muted_processes": list(muted_processes),
            "quiet_hours": None,
        }
        if quiet_hours is not None:
            start, end, tz = quiet_hours
            body["quiet_hours"] = {"start": start, "end": end, "tz": tz}
        return self._call(Call("PUT", f"/api/v1/users/{seg(user)}/preferences", body))


class Op:
    """The ops of ``batch``."""

    @staticmethod
    def create(
        id: str,
        owner: str,
        title: str,
        *,
        kind: Kind = "activity",
        process: Mapping[str, str] | None = None,
        record: Mapping[str, str | None] | None = None,
        url: str | None = None,
        postponed_until: Time | None = None,
    ) -> JSONObject:
        task = _drop_none(
            {
                "id": id,
                "owner": owner,
                "title": title,
                "kind": kind,
                "process": dict(process) if process is not None else None,
                "record": dict(record) if record is not None else None,
                "url": url,
                "postponed_until": when(postponed_until) if postponed_until else None,
            }
        )
        return {"op": "create", "task": task}

    @staticmethod
    def update(id: str, **changes: Any) -> JSONObject:
        return {"op": "update", "id": id, "changes": changes}

    @staticmethod
    def complete(id: str) -> JSONObject:
        return {"op": "complete", "id": id}

    @staticmethod
    def cancel(id: str) -> JSONObject:
        return {"op": "cancel", "id": id}

    @staticmethod
    def resume(id: str) -> JSONObject:
        return {"op": "resume", "id": id}

    @staticmethod
    def postpone(id: str, until: Time) -> JSONObject:
        return {"op": "postpone", "id": id, "until": when(until)}
