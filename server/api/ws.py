"""``/ws`` as an ASGI endpoint: authenticate, snapshot or replay, then live events
(docs/protocol.md). What each message means is ``server.socket_rules``; this moves
them. Under ``python -m server`` (and the tests) ``/ws`` is served by Taskbell's own
WebSocket protocol (``server.wsserver``) with the same rules; this endpoint is what
any other ASGI server runs.

Close codes: 4001 not authenticated or token expired, 4008 too slow (resume with
``since``), 1008 bad message, 1009 message too big, 1013 database unavailable (retry),
1012 server restarting.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from server import socket_rules as rules
from server.api.common import parts_of
from server.errors import CloseCode, Unauthorized, Unavailable
from server.limits import client_address
from server.wire import ProtocolViolation

log = logging.getLogger("taskbell.ws")


async def _receive(websocket: WebSocket, limit: int) -> str | bytes:
    """The next client frame; raises ``WebSocketDisconnect`` or ``ProtocolViolation``."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    data: str | bytes | None = message.get("text")
    if data is None:
        data = message.get("bytes") or b""
    if len(data) > limit:
        raise ProtocolViolation(CloseCode.TOO_BIG, f"message over {limit} bytes")
    return data


async def ws_endpoint(websocket: WebSocket) -> None:
    app = websocket.app
    p = parts_of(app)
    settings = p.settings
    limit = settings.max_ws_message_bytes
    address = client_address(websocket.scope)
    await websocket.accept()
    try:
        rules.arriving(app, address)  # 4029 over the per-address cap of unauthenticated
    except ProtocolViolation as exc:
        await websocket.close(*rules.refusal(exc))
        return
    try:
        raw = await asyncio.wait_for(_receive(websocket, limit), settings.auth_timeout_s)
        who, first = rules.greet(app, raw)
    except TimeoutError:
        await websocket.close(*rules.NO_AUTH_IN_TIME)
        return
    except WebSocketDisconnect:
        return
    except (ProtocolViolation, Unauthorized, Unavailable) as exc:
        await websocket.close(*rules.refusal(exc))
        return
    finally:
        rules.arrived(app, address)

    try:
        async with p.hub.session(websocket, who, first.since, first.since_feeds) as session:
            meter = rules.message_meter(app)
            while session.open:
                try:
                    raw = await _receive(websocket, limit)
                except WebSocketDisconnect:
                    return
                except ProtocolViolation as exc:
                    session.conn.close(exc.code, exc.reason)
                    return
                if not rules.answer(app, session, meter, raw):
                    return
    except Unavailable:
        return  # closed with 1013: the client comes back later


routes = [WebSocketRoute("/ws", ws_endpoint)]
