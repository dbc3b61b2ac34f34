"""Sending webhook deliveries: ``WebhookSender`` makes one attempt per call, a POST of
the stored body signed for this attempt's timestamp (Standard Webhooks, see
``signing``), without following redirects.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from server.delivery.queue import Message, Result, RetryPolicy, Verdict
from server.delivery.webhooks import signing
from server.delivery.webhooks.endpoints import Endpoints
from server.fields import whole_number
from server.wire import iso

_ERROR_BODY = 200  # characters of a failing receiver's answer kept in the log
# A Retry-After beyond this many seconds is read as this (the retry policy caps it lower).
RETRY_AFTER_MAX_S = 10**9


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    raw = value.strip()
    if raw.isascii() and raw.isdigit() and len(raw) > len(str(RETRY_AFTER_MAX_S)):
        return float(RETRY_AFTER_MAX_S)
    seconds = whole_number(raw, RETRY_AFTER_MAX_S)
    return None if seconds is None else float(seconds)


class WebhookSender:
    """One attempt per call; a 2xx answer is a delivery, a 410 disables the endpoint,
    anything else (3xx included: redirects are not followed) is retried."""

    def __init__(
        self, endpoints: Endpoints, session: aiohttp.ClientSession, retry: RetryPolicy
    ) -> None:
        self.endpoints = endpoints
        self.session = session
        self.retry = retry

    async def send(self, message: Message) -> Result:
        endpoint = await self.endpoints.find(message.tenant, message.target)
        if endpoint is None:
            return Result(Verdict.FAILED, error="the endpoint was deleted")
        if not endpoint.enabled:
            return Result(Verdict.RETRY, error="the endpoint is disabled")
        body = message.payload.encode()
        headers = signing.headers(endpoint.secret, message.id, int(time.time()), body)
        try:
            async with self.session.post(
                endpoint.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                answer = (await resp.content.read(_ERROR_BODY)).decode(errors="replace")
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                location = resp.headers.get("Location", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = _describe(exc)
            await self.endpoints.note_failure(endpoint, error)
            return Result(Verdict.RETRY, error=error)
        if 200 <= status < 300:
            await self.endpoints.note_success(endpoint)
            return Result(Verdict.DELIVERED, status=status)
        if status == 410:
            await self.endpoints.disable(endpoint, "the endpoint answered 410 Gone")
            # The row is paused with the endpoint now; re-enabling resumes it.
            return Result(Verdict.RETRY, status=status, error="410 Gone: endpoint disabled")
        if 300 <= status < 400:
            error = f"redirect to {location[:200]!r} not followed"
        else:
            error = f"HTTP {status}: {answer.strip()[:_ERROR_BODY]}" if answer.strip() else ""
            error = error or f"HTTP {status}"
        await self.endpoints.note_failure(endpoint, error)
        return Result(Verdict.RETRY, status=status, error=error, retry_after_s=retry_after)

    async def gave_up(self, message: Message, result: Result) -> None:
        """A delivery ran out of retries (about a day of them): unless the endpoint has
        succeeded since, it keeps failing, so disable it."""
        endpoint = await self.endpoints.find(message.tenant, message.target)
        if endpoint is not None and endpoint.enabled and endpoint.failing_since is not None:
            await self.endpoints.disable(
                endpoint,
                f"failing without a success since {iso(endpoint.failing_since)}; "
                f"last error: {result.error}",
            )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text[:300]
