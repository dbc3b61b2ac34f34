"""The server's errors as exceptions, one class per status.

Every error answer of Taskbell is ``{"error": {"code", "message", "details"?}}``; each
exception carries those (``code``, ``message``, ``details``) and the HTTP ``status``.
``RateLimited`` and ``Unavailable`` also carry ``retry_after`` (seconds, or None)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class TaskbellError(Exception):
    """Anything this client raises on purpose."""


class ApiError(TaskbellError):
    """An error answer from the server."""

    status = 0

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        details: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class Unprocessable(ApiError):
    status = 422


class RateLimited(ApiError):
    status = 429


class ServerError(ApiError):
    status = 500


class Unavailable(ServerError):
    status = 503


BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unprocessable,
        RateLimited,
        ServerError,
        Unavailable,
    )
}


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (a number of seconds or an HTTP date), or None."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_for(response: httpx.Response) -> ApiError:
    """The exception for an error answer."""
    status = response.status_code
    code, message, details = "http_error", response.reason_phrase or f"HTTP {status}", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = str(err.get("code", code))
        message = str(err.get("message", message))
        details = err.get("details")
    cls = BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(
        message, code=code, status=status, details=details, retry_after=retry_after(response)
    )
