"""Checking a Taskbell webhook on the receiving side (Standard Webhooks).

Each delivery carries ``webhook-id`` (the same on every retry: drop repeats),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``:
``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, keyed with the endpoint's
secret (``whsec_`` + base64), possibly several signatures separated by spaces (while a
secret is rotated). ``verify_webhook`` checks all of it on the raw body, before parsing::

    event = verify_webhook(secret, request.headers, await request.body())
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from taskbell_client.errors import TaskbellError

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 5 * 60


class WebhookVerificationError(TaskbellError):
    """The request is not a genuine, fresh delivery: answer it 400 and do nothing."""


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,...`` signature of one delivery (for tests of a receiver)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return (
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
    )


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> dict[str, Any]:
    """The delivery's event (the parsed body) when its signature is right and its
    timestamp within ``tolerance_s`` of ``now`` (either way); raises
    ``WebhookVerificationError`` otherwise. ``headers``: any mapping (names in any case)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    given = lower.get("webhook-signature")
    if not msg_id or not stamp or not given:
        raise WebhookVerificationError("webhook-id, webhook-timestamp or webhook-signature missing")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise WebhookVerificationError("webhook-timestamp is too old or in the future")
    expected = sign(secret, msg_id, timestamp, body)
    if not any(
        hmac.compare_digest(expected.encode(), candidate.encode())
        for candidate in given.split()
        if candidate.startswith("v1,")
    ):
        raise WebhookVerificationError("no matching signature")
    try:
        event: dict[str, Any] = json.loads(body)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
    return event
