"""Every error Taskbell raises on purpose, and the WebSocket close codes.

::

    TaskbellError                      base of everything below
    ├── ConfigError                    bad or unsafe settings; the process refuses to start
    └── ApiError                       answered as {"error": {"code", "message"}}
        ├── BadRequest          400    malformed JSON, bad query or path values
        ├── Unauthorized        401    missing, expired or wrong credentials; carries
        │                              WWW-Authenticate: Bearer
        ├── Forbidden           403    a browser page from an origin not allowed; a person
        │                              without the right a call needs (process-admin)
        ├── NotFound            404    no such thing, or not yours (never 403)
        ├── Conflict            409    illegal transition, id reused with another body,
        │                              disabled process
        ├── PayloadTooLarge     413    body over the limit
        ├── UnsupportedMediaType 415   a body that says it is not JSON
        ├── Unprocessable       422    well-formed JSON of the wrong shape
        ├── TooManyRequests     429    rate limit
        └── Unavailable         503    database or broker unreachable; carries Retry-After

HTTP handlers raise these; one exception handler turns them into JSON. Anything else
becomes a 500 with a generic body and the traceback goes only to the log.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class CloseCode(IntEnum):
    """WebSocket close codes used by ``/ws`` (see docs/protocol.md)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    BAD_MESSAGE = 1008
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    NOT_AUTHENTICATED = 4001
    TOO_SLOW = 4008
    TOO_MANY = 4029  # over a cap: sockets per user or address, messages per second


class TaskbellError(Exception):
    """Base of all deliberate Taskbell errors."""


class ConfigError(TaskbellError):
    """Settings are malformed or unsafe; the process must not start."""


class ApiError(TaskbellError):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            err["details"] = self.details
        return {"error": err}


class BadRequest(ApiError):
    status = 400
    code = "bad_request"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message, code=code, **details)
        # RFC 6750: say which scheme is wanted; a bad token also says so.
        challenge = 'Bearer realm="taskbell"'
        if self.code not in ("missing_credentials", "unauthorized"):
            challenge += ', error="invalid_token"'
        self.headers["WWW-Authenticate"] = challenge


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class Unprocessable(ApiError):
    status = 422
    code = "invalid"


class TooManyRequests(ApiError):
    status = 429
    code = "rate_limited"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.headers["Retry-After"] = str(retry_after)


class RequestTimeout(ApiError):
    """408: the request's body did not arrive in time; the connection is closed."""

    status = 408
    code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers["Connection"] = "close"
