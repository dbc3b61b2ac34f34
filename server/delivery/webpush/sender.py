"""Sending pushes: ``PushSender`` makes one push per call through pywebpush
(aes128gcm encryption, RFC 8291; VAPID, RFC 8292). It carries a ``Topic`` header derived
from the task id, so a push service holding an undelivered "added" replaces it with the
"removed"; ``task.added`` goes with ``Urgency: high``. A subscription the push service
answers with 404 or 410 is deleted.
"""

from __future__ import annotations

import hashlib
import logging

import aiohttp
from pywebpush import WebPushException, webpush_async

from server.delivery.queue import Message, Result, RetryPolicy, Verdict
from server.delivery.webpush.keys import VapidKeys, b64url
from server.delivery.webpush.subscriptions import Subscriptions

log = logging.getLogger("taskbell.webpush")


def topic(task_id: str) -> str:
    """A Web Push ``Topic`` (at most 32 base64url characters) naming the task."""
    return b64url(hashlib.sha256(task_id.encode()).digest())[:32]


class PushSender:
    """One push per call through pywebpush; 404/410 deletes the subscription."""

    def __init__(
        self,
        subscriptions: Subscriptions,
        vapid: VapidKeys,
        session: aiohttp.ClientSession,
        retry: RetryPolicy,
        *,
        ttl_s: int,
    ) -> None:
        self.subscriptions = subscriptions
        self.vapid = vapid
        self.session = session
        self.retry = retry
        self.ttl_s = ttl_s

    async def send(self, message: Message) -> Result:
        sub = await self.subscriptions.find(message.tenant, message.target)
        if sub is None:
            return Result(Verdict.FAILED, error="the subscription was removed")
        headers = {
            "Urgency": "high" if message.event_type == "task.added" else "normal",
            "Topic": topic(message.task_id),
        }
        try:
            resp = await webpush_async(
                sub.info(),
                data=message.payload,
                vapid_private_key=self.vapid.signer,
                vapid_claims={"sub": self.vapid.subject},  # a fresh dict: it gets "aud"
                ttl=self.ttl_s,
                headers=headers,
                aiohttp_session=self.session,
                timeout=self.session.timeout,
            )
        except WebPushException as exc:
            status = _status_of(exc)
            if status in (404, 410):
                await self.subscriptions.remove(sub)
                log.info(
                    "push subscription gone",
                    extra={"tenant": sub.tenant, "subscription": sub.id},
                )
                return Result(Verdict.FAILED, status=status, error="subscription gone")
            error = f"push service answered {status}"
            if status is not None and (status == 429 or status >= 500):
                return Result(Verdict.RETRY, status=status, error=error)
            return Result(Verdict.FAILED, status=status, error=error)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Result(Verdict.RETRY, error=(str(exc) or type(exc).__name__)[:300])
        return Result(Verdict.DELIVERED, status=getattr(resp, "status", None))

    async def gave_up(self, message: Message, result: Result) -> None:
        """A push that could not be delivered in time is stale: nothing to do."""


def _status_of(exc: WebPushException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status", None)
    return int(status) if isinstance(status, int) else None
