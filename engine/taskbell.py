"""Talking to Taskbell as a producer: calls with retries, the outbox sender, and the
webhook endpoint's registration and signatures.

Retries: a call that gets no answer, or 429 / 5xx, is tried again after a backoff that
doubles up to ``retry_cap_s`` (with jitter), or after ``Retry-After`` when Taskbell says.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from engine.store import Call, Store

log = logging.getLogger("engine.taskbell")

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
WEBHOOK_EVENTS = ("task.completed", "task.canceled")
DESCRIPTION = "taskbell-engine (BPMN)"
TOLERANCE_S = 300  # Standard Webhooks: refuse timestamps further off than this


class Unreachable(Exception):
    """No usable answer from Taskbell (yet)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    retry_after: float | None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after", "").strip()
    if value.replace(".", "", 1).isdigit():
        return min(float(value), 300.0)
    return None


class Taskbell:
    def __init__(
        self,
        base_url: str,
        producer_key: str,
        *,
        retry_base_s: float = 0.2,
        retry_cap_s: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self.http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {producer_key}"},
            timeout=10.0,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return retry_after
        delay = min(self.retry_cap_s, self.retry_base_s * (2 ** min(attempt, 16)))
        return float(delay * (0.5 + random.random() / 2))

    async def once(self, method: str, path: str, body: Any = None) -> Answer:
        """One attempt; raises ``Unreachable`` when nothing answered."""
        try:
            resp = await self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise Unreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        try:
            parsed: Any = resp.json() if resp.content else None
        except ValueError:
            parsed = resp.text
        return Answer(resp.status_code, parsed, _retry_after(resp.headers))

    async def call(
        self, method: str, path: str, body: Any = None, *, deadline_s: float | None = None
    ) -> Answer:
        """With retries (until ``deadline_s`` seconds have passed, or forever)."""
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                answer = await self.once(method, path, body)
                if answer.status not in RETRYABLE:
                    return answer
                why = f"HTTP {answer.status}"
                wait = self.backoff(attempt, answer.retry_after)
            except Unreachable as exc:
                why, wait = str(exc), self.backoff(attempt)
            attempt += 1
            if deadline_s is not None and time.monotonic() - start + wait > deadline_s:
                raise Unreachable(f"{method} {path}: gave up after {attempt} attempts ({why})")
            log.info("retrying %s %s in %.2fs (%s)", method, path, wait, why)
            await asyncio.sleep(wait)


class Sender:
    """Sends the outbox in order, one call at a time; a call that cannot be sent yet
    holds back the ones after it (a task must not be created before its process)."""

    def __init__(
        self,
        store: Store,
        taskbell: Taskbell,
        on_refused: Callable[[Call, str], None] | None = None,
    ) -> None:
        self.store = store
        self.taskbell = taskbell
        self.on_refused = on_refused
        self.wake = asyncio.Event()
        self.sent = 0

    async def run(self) -> None:
        attempt = 0
        while True:
            call = self.store.next_call()
            if call is None:
                attempt = 0
                self.wake.clear()
                if self.store.next_call() is None:
                    await self.wake.wait()
                continue
            wait = await self._send(call, attempt)
            if wait is None:
                attempt = 0
                continue
            attempt += 1
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait)

    async def _send(self, call: Call, attempt: int) -> float | None:
        """None when the call is done (sent, or refused for good); else the wait."""
        try:
            answer = await self.taskbell.once(call.method, call.path, call.body)
        except Unreachable as exc:
            with self.store.tx():
                self.store.call_failed_attempt(call.seq, str(exc)[:300])
            return self.taskbell.backoff(attempt)
        if answer.status in RETRYABLE or answer.status == 401:
            with self.store.tx():
                self.store.call_failed_attempt(call.seq, f"HTTP {answer.status}: {answer.body}")
            if answer.status == 401:
                log.error("Taskbell refused the producer key (401); check TASKBELL_PRODUCER_KEY")
            return self.taskbell.backoff(attempt, answer.retry_after)
        if answer.status < 300:
            with self.store.tx():
                self.store.call_done(call.seq, "sent")
            self.sent += 1
            return None
        # 4xx: sending it again would not help (e.g. 409 illegal_transition on a cancel
        # of a step the owner completed at the same moment). Keep the answer, go on.
        error = f"HTTP {answer.status}: {answer.body}"[:500]
        log.warning("Taskbell refused %s %s: %s", call.method, call.path, error)
        with self.store.tx():
            self.store.call_done(call.seq, "refused", error)
        if self.on_refused is not None:
            try:
                self.on_refused(call, error)
            except Exception:
                log.exception("handling a refused call failed")
        return None


async def memberships(
    taskbell: Taskbell, roles: list[str], deadline_s: float = 3.0
) -> dict[str, frozenset[str]]:
    """Each role's members as Taskbell has them (``GET /roles/{role}``); a role Taskbell
    does not know has none. A role whose answer does not come in time is left out."""
    found: dict[str, frozenset[str]] = {}
    for role in roles:
        try:
            answer = await taskbell.call("GET", f"/api/v1/roles/{role}", deadline_s=deadline_s)
        except Unreachable as exc:
            log.warning("members of role %s: %s", role, exc)
            continue
        if answer.status == 200 and isinstance(answer.body, dict):
            found[role] = frozenset(str(m) for m in answer.body.get("members") or [])
        elif answer.status == 404:
            found[role] = frozenset()
    return found


# ---------------------------------------------------------------------- webhook endpoint


async def register(
    taskbell: Taskbell, store: Store, url: str, on_secret: Callable[[str], None]
) -> str:
    """Make sure Taskbell has this engine's endpoint (``url``) for task.completed and
    task.canceled, enabled, and that its secret is known; returns the endpoint id.

    The secret is shown only when an endpoint is created, so it is kept in the store; an
    endpoint for the same url whose secret was lost (a new ENGINE_DB) is deleted and made
    again, so Taskbell never signs for this url with a secret nobody has."""
    endpoint_id = store.get_meta("webhook_endpoint_id")
    secret = store.get_meta("webhook_secret")
    if endpoint_id and secret:
        answer = await taskbell.call("GET", f"/api/v1/webhooks/{endpoint_id}")
        if answer.status == 200:
            current = answer.body
            changes: dict[str, Any] = {}
            if current.get("url") != url:
                changes["url"] = url
            if sorted(current.get("events") or []) != sorted(WEBHOOK_EVENTS):
                changes["events"] = list(WEBHOOK_EVENTS)
            if not current.get("enabled", True):
                changes["enabled"] = True
            if changes:
                patched = await taskbell.call("PATCH", f"/api/v1/webhooks/{endpoint_id}", changes)
                if patched.status != 200:
                    raise Unreachable(f"PATCH webhook endpoint: {patched.status} {patched.body}")
            on_secret(secret)
            return endpoint_id
        if answer.status != 404:
            raise Unreachable(f"GET webhook endpoint: {answer.status} {answer.body}")
    listed = await taskbell.call("GET", "/api/v1/webhooks")
    if listed.status == 200:
        for endpoint in listed.body.get("endpoints", []):
            if endpoint.get("url") == url and endpoint.get("id") != endpoint_id:
                log.info(
                    "deleting endpoint %s for %s (its secret is not known)", endpoint["id"], url
                )
                await taskbell.call("DELETE", f"/api/v1/webhooks/{endpoint['id']}")
    body = {"url": url, "events": list(WEBHOOK_EVENTS), "description": DESCRIPTION}
    created = await taskbell.call("POST", "/api/v1/webhooks", body)
    if created.status != 201:
        raise Unreachable(f"registering the webhook endpoint: {created.status} {created.body}")
    endpoint_id, secret = created.body["id"], created.body["secret"]
    with store.tx():
        store.set_meta("webhook_endpoint_id", endpoint_id)
        store.set_meta("webhook_secret", secret)
    on_secret(secret)
    log.info("registered webhook endpoint %s for %s", endpoint_id, url)
    return str(endpoint_id)


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> bool:
    """A Standard Webhooks signature, checked as Taskbell signs: ``v1,`` + base64 of
    HMAC-SHA256 over ``"{webhook-id}.{webhook-timestamp}.{body}"`` with the secret's key;
    any of the space-separated signatures may match; the timestamp must be recent."""
    msg_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not msg_id or not stamp.isdigit() or not signatures:
        return False
    if abs((now if now is not None else time.time()) - int(stamp)) > TOLERANCE_S:
        return False
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except ValueError:
        return False
    signed = f"{msg_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return True
    return False
