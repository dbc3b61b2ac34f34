"""The origin allow-list for ``/ws`` and ``/events`` (``TASKBELL_ALLOWED_ORIGINS``).

Auth on those endpoints is a bearer token, so with no list any origin may connect. When
a list is set, a browser page from any other origin is refused at the handshake (403),
before the endpoint runs: exact matching only (scheme, host and port), so look-alikes
such as ``https://app.example.com.evil.test`` and the opaque ``null`` origin of
sandboxed frames and ``file:`` pages never pass. A request without an Origin header is
let through: browsers always send one on these requests, other clients send none.
"""

from __future__ import annotations

import logging

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("taskbell.origins")

GUARDED_HTTP_PATHS = frozenset({"/events", "/api/v1/events"})


def allowed(origin_header: str | None, allowed: frozenset[str]) -> bool:
    """Whether a request whose ``Origin`` header is ``origin_header`` (None: absent) may
    go on, given the allow-list ``allowed`` (empty: every origin)."""
    if not allowed or origin_header is None:
        return True
    return origin_header in allowed and origin_header != "null"


def _origin(scope: Scope) -> tuple[bool, str | None]:
    """(several Origin headers?, the one Origin header or None)."""
    values = [v for k, v in scope.get("headers", []) if k == b"origin"]
    if len(values) > 1:
        return True, None
    return False, values[0].decode("latin-1") if values else None


_BODY = orjson.dumps(
    {"error": {"code": "origin_not_allowed", "message": "this origin may not connect here"}}
)
_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_BODY)).encode()),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


class OriginGuard:
    """ASGI middleware: refuses ``/ws`` handshakes (any WebSocket path) and the event
    stream from origins not on the list, with 403, before anything else runs. Wrap it
    outside ``WebSocketFastPath``, which hands ``/ws`` straight to its endpoint."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        guarded = kind == "websocket" or (kind == "http" and scope["path"] in GUARDED_HTTP_PATHS)
        if not guarded or not self.allowed:
            await self.app(scope, receive, send)
            return
        several, origin = _origin(scope)
        if not several and allowed(origin, self.allowed):
            await self.app(scope, receive, send)
            return
        log.info("refused a %s from origin %.100r", kind, origin)
        if kind == "http":
            await send({"type": "http.response.start", "status": 403, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": _BODY})
        elif "websocket.http.response" in scope.get("extensions", {}):
            # The denial extension (uvicorn has it): a real 403 with a JSON body.
            await send(
                {"type": "websocket.http.response.start", "status": 403, "headers": _HEADERS}
            )
            await send({"type": "websocket.http.response.body", "body": _BODY})
        else:
            # Closing before accepting makes the server answer the handshake with 403.
            await send({"type": "websocket.close", "code": 1008})
