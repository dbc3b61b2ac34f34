"""The origin allow-list for ``/ws`` and ``/events`` (``TASKBELL_ALLOWED_ORIGINS``).

Auth on those endpoints is a bearer token, so with no list any origin may connect. When
a list is set, a browser page from any other origin is refused at the handshake (403),
before the endpoint runs (the ASGI gate, ``server.gate``, asks ``refused`` and answers
with ``refuse``): exact matching only (scheme, host and port), so look-alikes
such as ``https://app.example.com.evil.test`` and the opaque ``null`` origin of
sandboxed frames and ``file:`` pages never pass. A request without an Origin header is
let through: browsers always send one on these requests, other clients send none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import orjson
from starlette.types import Scope, Send

log = logging.getLogger("taskbell.origins")

GUARDED_HTTP_PATHS = frozenset({"/events", "/api/v1/events"})


def allowed(origin_header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request whose ``Origin`` header is ``origin_header`` (None: absent) may
    go on, given the allow-list ``allowed`` (empty: every origin)."""
    if not allowed or origin_header is None:
        return True
    return origin_header in allowed and origin_header != "null"


def origin_of(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bool, str | None]:
    """(several Origin headers?, the one Origin header or None)."""
    values = [v for k, v in headers if k == b"origin"]
    if len(values) > 1:
        return True, None
    return False, values[0].decode("latin-1") if values else None


def guarded(scope: Scope) -> bool:
    """Whether the origin check applies: every WebSocket handshake, and the event stream."""
    kind = scope["type"]
    return kind == "websocket" or (kind == "http" and scope["path"] in GUARDED_HTTP_PATHS)


def refused(scope: Scope, allowed_origins: frozenset[str]) -> bool:
    """Whether ``scope`` is a guarded request from an origin not on the list (or with
    several Origin headers), to be answered by ``refuse``."""
    if not allowed_origins or not guarded(scope):
        return False
    several, origin = origin_of(scope.get("headers", ()))
    if not several and allowed(origin, allowed_origins):
        return False
    log.info("refused a %s from origin %.100r", scope["type"], origin)
    return True


_BODY = orjson.dumps(
    {"error": {"code": "origin_not_allowed", "message": "this origin may not connect here"}}
)
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


async def refuse(scope: Scope, send: Send) -> None:
    """Answer a refused handshake or stream with 403 ``origin_not_allowed``."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 403, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _BODY})
    elif "websocket.http.response" in scope.get("extensions", {}):
        # The denial extension (uvicorn has it): a real 403 with a JSON body.
        await send({"type": "websocket.http.response.start", "status": 403, "headers": _HEADERS})
        await send({"type": "websocket.http.response.body", "body": _BODY})
    else:
        # Closing before accepting makes the server answer the handshake with 403.
        await send({"type": "websocket.close", "code": 1008})


# The refusal's parts, for a server that answers the handshake itself (server.wsserver).
REFUSAL_BODY = _BODY
REFUSAL_HEADERS = _HEADERS
