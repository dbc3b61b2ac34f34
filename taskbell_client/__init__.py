"""Taskbell's Python producer client (httpx; no import of the server).

    from taskbell_client import Client, NotFound

    with Client("http://127.0.0.1:8000", "producer-key") as tb:
        tb.create_task("t-42", "alice", "Approve invoice INV-7", url="https://crm/…")
        tb.complete_task("t-42")

``AsyncClient`` has the same calls, to be awaited. Errors are exceptions by status
(``taskbell_client.errors``); 429 and 503 are retried with backoff and jitter, honouring
``Retry-After`` (``Retry``). Receivers check deliveries with ``verify_webhook``.
"""

from taskbell_client._core import NO_RETRY, Op, Retry
from taskbell_client.client import AsyncClient, Client
from taskbell_client.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TaskbellError,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UnsupportedMediaType,
)
from taskbell_client.webhooks import WebhookVerificationError, sign, verify_webhook

__all__ = [
    "NO_RETRY",
    "ApiError",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "NotFound",
    "Op",
    "PayloadTooLarge",
    "RateLimited",
    "Retry",
    "ServerError",
    "TaskbellError",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "UnsupportedMediaType",
    "WebhookVerificationError",
    "sign",
    "verify_webhook",
]
